;; Host functions called from every export, wapper_alloc and wapper_free
;; included (while the host is in the middle of passing a buffer), to
;; find a host function that calls back into the guest or takes a lock
;; the caller holds. Every export reports the value 666666 for device
;; handles 1..32 and property handles 1..8: the host must refuse (-3)
;; every handle that is not one of this plugin's devices, so a plugin
;; cannot forge readings of another plugin's device. wapper_read also
;; reports its own property 200 times. The value read is the number of
;; reports for other handles that the host accepted (0 is right).
(module
  (import "wapper" "report" (func $report (param i32 i32 i32 i32) (result i32)))
  (import "wapper" "kv_set" (func $kv_set (param i32 i32 i32 i32) (result i32)))
  (import "wapper" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "\00\01\00\00\00\00\00\00\00\00")
  (data (i32.const 32) "\00\01")
  ;; 64: INT 666666.
  (data (i32.const 64) "\01\2a\2c\0a\00\00\00\00\00")
  (data (i32.const 80) "reentrant")
  ;; spoof reports for every other handle and returns how many the host
  ;; accepted; own is this call's device (0 when there is none).
  (func $spoof (param $own i32) (result i32)
    (local $dev i32) (local $prop i32) (local $ok i32)
    (local.set $dev (i32.const 1))
    (loop $devs
      (local.set $prop (i32.const 1))
      (loop $props
        (if (i32.ne (local.get $dev) (local.get $own)) (then
          (if (i32.eqz (call $report (local.get $dev) (local.get $prop) (i32.const 64) (i32.const 9)))
            (then (local.set $ok (i32.add (local.get $ok) (i32.const 1)))))))
        (local.set $prop (i32.add (local.get $prop) (i32.const 1)))
        (br_if $props (i32.le_u (local.get $prop) (i32.const 8))))
      (local.set $dev (i32.add (local.get $dev) (i32.const 1)))
      (br_if $devs (i32.le_u (local.get $dev) (i32.const 32))))
    (local.get $ok))
  (func $busy
    (drop (call $spoof (i32.const 0)))
    (drop (call $kv_set (i32.const 80) (i32.const 9) (i32.const 64) (i32.const 9))))
  (func (export "wapper_abi_v1") (result i32) (i32.const 0))
  (func (export "wapper_alloc") (param $n i32) (result i32)
    (call $busy)
    (if (result i32) (i32.gt_u (local.get $n) (i32.const 65536))
      (then (i32.const 0)) (else (i32.const 65536))))
  (func (export "wapper_free") (param i32) (call $busy))
  (func (export "wapper_init") (param i32 i32) (result i64) (call $busy) (i64.const 0))
  (func (export "wapper_device_add") (param $dev i32) (param i32 i32) (result i64)
    (drop (call $spoof (local.get $dev)))
    (drop (call $report (local.get $dev) (i32.const 1) (i32.const 64) (i32.const 9)))
    (i64.const 0))
  (func (export "wapper_device_update") (param $dev i32) (param i32 i32) (result i64)
    (drop (call $spoof (local.get $dev)))
    (i64.const 0))
  (func (export "wapper_device_remove") (param $dev i32) (result i64)
    (drop (call $spoof (local.get $dev)))
    (i64.const 0))
  (func (export "wapper_read") (param $dev i32) (param $prop i32) (result i64)
    (local $i i32) (local $ok i32)
    (local.set $ok (call $spoof (local.get $dev)))
    (loop $burst
      (drop (call $report (local.get $dev) (local.get $prop) (i32.const 64) (i32.const 9)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $burst (i32.lt_u (local.get $i) (i32.const 200))))
    (call $log (i32.const -1) (i32.const 80) (i32.const 9))
    (i64.store (i32.const 18) (i64.extend_i32_u (local.get $ok)))
    (i64.const 0x100000000a))
  (func (export "wapper_write") (param $dev i32) (param i32 i32 i32) (result i64)
    (drop (call $spoof (local.get $dev)))
    (i64.const 0))
  (func (export "wapper_device_state") (param $dev i32) (result i64)
    (drop (call $spoof (local.get $dev)))
    (i64.const 0x2000000002))
)
