;; wapper_read calls one import per property handle with a range that
;; wraps past 2^32 (ptr+len), lies outside memory, or has length
;; 0xFFFFFFFF. The host must answer each with an error code (SPEC.md §5:
;; host functions never trap on bad guest input) and read nothing out of
;; bounds. The value read is handle*1000 + code, the code being the
;; negated result of a wapper import, the errno of a WASI one, or 0 for
;; log (which returns nothing).
;;
;; handle: call
;;   1 log(warn, 0xFFFFFFF0, 0x20)          12 sock_open(tcp, 0xFFFFFFF0, 0x20)
;;   2 log(warn, 0x7FFFFFF0, 0x20)          13 serial_open(0xFFFFFFF0, 0x20, 9600 8N1)
;;   3 log(warn, 16, 0xFFFFFFFF)            14 gpio_open(16, 0xFFFFFFFF)
;;   4 kv_set(key 16+0xFFFFFFFF)            15 io_read(1, 0xFFFFFFF0, 0x20)
;;   5 kv_set(key 0xFFFFFFF0+0x20)          16 io_write(1, 16, 0xFFFFFFFF)
;;   6 kv_set(value 0xFFFFFFF0+0x20)        17 io_read(1, 16, 0xFFFFFFFF)
;;   7 kv_get(dst 0xFFFFFFF0+0x20)          18 fd_write(1, iovs 0xFFFFFFF8)
;;   8 kv_get(key 0xFFFFFFF0+0x20)          19 fd_write(1, iov {16, 0xFFFFFFFF})
;;   9 kv_delete(0xFFFFFFF0, 0x20)          20 random_get(0xFFFFFFF0, 0x20)
;;  10 report(value 0xFFFFFFF0+0x20)        21 clock_ns(0xFFFFFFFF)
;;  11 report(value 16+0xFFFFFFFF)
(module
  (import "wapper" "log" (func $log (param i32 i32 i32)))
  (import "wapper" "kv_set" (func $kv_set (param i32 i32 i32 i32) (result i32)))
  (import "wapper" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i32)))
  (import "wapper" "kv_delete" (func $kv_delete (param i32 i32) (result i32)))
  (import "wapper" "report" (func $report (param i32 i32 i32 i32) (result i32)))
  (import "wapper" "sock_open" (func $sock_open (param i32 i32 i32 i32) (result i32)))
  (import "wapper" "serial_open" (func $serial_open (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapper" "gpio_open" (func $gpio_open (param i32 i32 i32 i32) (result i32)))
  (import "wapper" "io_read" (func $io_read (param i32 i32 i32 i32) (result i32)))
  (import "wapper" "io_write" (func $io_write (param i32 i32 i32 i32) (result i32)))
  (import "wapper" "clock_ns" (func $clock_ns (param i32) (result i64)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "\00\01\00\00\00\00\00\00\00\00")
  (data (i32.const 32) "\00\01")
  ;; 768: one iovec {16, 0xFFFFFFFF}.
  (data (i32.const 768) "\10\00\00\00\ff\ff\ff\ff")
  (func $attack (param $dev i32) (param $h i32) (result i32)
    (if (i32.eq (local.get $h) (i32.const 1)) (then
      (call $log (i32.const 1) (i32.const 0xFFFFFFF0) (i32.const 0x20)) (return (i32.const 0))))
    (if (i32.eq (local.get $h) (i32.const 2)) (then
      (call $log (i32.const 1) (i32.const 0x7FFFFFF0) (i32.const 0x20)) (return (i32.const 0))))
    (if (i32.eq (local.get $h) (i32.const 3)) (then
      (call $log (i32.const 1) (i32.const 16) (i32.const 0xFFFFFFFF)) (return (i32.const 0))))
    (if (i32.eq (local.get $h) (i32.const 4)) (then
      (return (i32.sub (i32.const 0)
        (call $kv_set (i32.const 16) (i32.const 0xFFFFFFFF) (i32.const 16) (i32.const 1))))))
    (if (i32.eq (local.get $h) (i32.const 5)) (then
      (return (i32.sub (i32.const 0)
        (call $kv_set (i32.const 0xFFFFFFF0) (i32.const 0x20) (i32.const 16) (i32.const 4))))))
    (if (i32.eq (local.get $h) (i32.const 6)) (then
      (return (i32.sub (i32.const 0)
        (call $kv_set (i32.const 16) (i32.const 4) (i32.const 0xFFFFFFF0) (i32.const 0x20))))))
    (if (i32.eq (local.get $h) (i32.const 7)) (then
      ;; A key that exists, so that kv_get gets as far as writing dst.
      (drop (call $kv_set (i32.const 16) (i32.const 4) (i32.const 16) (i32.const 4)))
      (return (i32.sub (i32.const 0)
        (call $kv_get (i32.const 16) (i32.const 4) (i32.const 0xFFFFFFF0) (i32.const 0x20))))))
    (if (i32.eq (local.get $h) (i32.const 8)) (then
      (return (i32.sub (i32.const 0)
        (call $kv_get (i32.const 0xFFFFFFF0) (i32.const 0x20) (i32.const 16) (i32.const 4))))))
    (if (i32.eq (local.get $h) (i32.const 9)) (then
      (return (i32.sub (i32.const 0)
        (call $kv_delete (i32.const 0xFFFFFFF0) (i32.const 0x20))))))
    (if (i32.eq (local.get $h) (i32.const 10)) (then
      (return (i32.sub (i32.const 0)
        (call $report (local.get $dev) (local.get $h) (i32.const 0xFFFFFFF0) (i32.const 0x20))))))
    (if (i32.eq (local.get $h) (i32.const 11)) (then
      (return (i32.sub (i32.const 0)
        (call $report (local.get $dev) (local.get $h) (i32.const 16) (i32.const 0xFFFFFFFF))))))
    (if (i32.eq (local.get $h) (i32.const 12)) (then
      (return (i32.sub (i32.const 0)
        (call $sock_open (i32.const 0) (i32.const 0xFFFFFFF0) (i32.const 0x20) (i32.const 100))))))
    (if (i32.eq (local.get $h) (i32.const 13)) (then
      (return (i32.sub (i32.const 0)
        (call $serial_open (i32.const 0xFFFFFFF0) (i32.const 0x20) (i32.const 9600)
          (i32.const 8) (i32.const 0) (i32.const 1) (i32.const 100))))))
    (if (i32.eq (local.get $h) (i32.const 14)) (then
      (return (i32.sub (i32.const 0)
        (call $gpio_open (i32.const 16) (i32.const 0xFFFFFFFF) (i32.const 0) (i32.const 100))))))
    (if (i32.eq (local.get $h) (i32.const 15)) (then
      (return (i32.sub (i32.const 0)
        (call $io_read (i32.const 1) (i32.const 0xFFFFFFF0) (i32.const 0x20) (i32.const 100))))))
    (if (i32.eq (local.get $h) (i32.const 16)) (then
      (return (i32.sub (i32.const 0)
        (call $io_write (i32.const 1) (i32.const 16) (i32.const 0xFFFFFFFF) (i32.const 100))))))
    (if (i32.eq (local.get $h) (i32.const 17)) (then
      (return (i32.sub (i32.const 0)
        (call $io_read (i32.const 1) (i32.const 16) (i32.const 0xFFFFFFFF) (i32.const 100))))))
    (if (i32.eq (local.get $h) (i32.const 18)) (then
      (return (call $fd_write (i32.const 1) (i32.const 0xFFFFFFF8) (i32.const 1) (i32.const 600)))))
    (if (i32.eq (local.get $h) (i32.const 19)) (then
      (return (call $fd_write (i32.const 1) (i32.const 768) (i32.const 1) (i32.const 600)))))
    (if (i32.eq (local.get $h) (i32.const 20)) (then
      (return (call $random_get (i32.const 0xFFFFFFF0) (i32.const 0x20)))))
    (if (i32.eq (local.get $h) (i32.const 21)) (then
      (return (i32.wrap_i64 (i64.sub (i64.const 0) (call $clock_ns (i32.const 0xFFFFFFFF)))))))
    (i32.const 999))
  (func (export "wapper_abi_v1") (result i32) (i32.const 0))
  (func (export "wapper_alloc") (param $n i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $n) (i32.const 65536))
      (then (i32.const 0)) (else (i32.const 65536))))
  (func (export "wapper_free") (param i32))
  (func (export "wapper_init") (param i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_add") (param i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_update") (param i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_remove") (param i32) (result i64) (i64.const 0))
  (func (export "wapper_read") (param $dev i32) (param $prop i32) (result i64)
    (local $code i32)
    (local.set $code (call $attack (local.get $dev) (local.get $prop)))
    (i64.store (i32.const 18)
      (i64.add (i64.mul (i64.extend_i32_u (local.get $prop)) (i64.const 1000))
        (i64.extend_i32_s (local.get $code))))
    (i64.const 0x100000000a))
  (func (export "wapper_write") (param i32 i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_state") (param i32) (result i64) (i64.const 0x2000000002))
)
