;; wapper_read writes to WASI stdout and stderr with fd_write, each call
;; gathering 1024 iovecs that all point at one 64 KiB buffer of 64-byte
;; lines: 64 MiB and a million lines per call, in an endless loop. One
;; host call is not interruptible by the deadline, so the host must make
;; lines it drops cheap, and keep its log bounded.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (data (i32.const 16) "\00\01\00\00\00\00\00\00\00\00")
  (data (i32.const 32) "\00\01")
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
    (local $i i32)
    ;; Page 2: 1024 lines of 63 'B' and a newline.
    (memory.fill (i32.const 131072) (i32.const 0x42) (i32.const 65536))
    (local.set $i (i32.const 0))
    (loop $nl
      (i32.store8 (i32.add (i32.const 131135) (i32.shl (local.get $i) (i32.const 6))) (i32.const 10))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $nl (i32.lt_u (local.get $i) (i32.const 1024))))
    ;; Page 3: 1024 iovecs {131072, 65536}.
    (local.set $i (i32.const 0))
    (loop $iov
      (i32.store (i32.add (i32.const 196608) (i32.shl (local.get $i) (i32.const 3))) (i32.const 131072))
      (i32.store (i32.add (i32.const 196612) (i32.shl (local.get $i) (i32.const 3))) (i32.const 65536))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $iov (i32.lt_u (local.get $i) (i32.const 1024))))
    (loop $flood
      (drop (call $fd_write (i32.const 1) (i32.const 196608) (i32.const 1024) (i32.const 600)))
      (drop (call $fd_write (i32.const 2) (i32.const 196608) (i32.const 1024) (i32.const 600)))
      (br $flood))
    (unreachable))
  (func (export "wapper_write") (param i32 i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_state") (param i32) (result i64) (i64.const 0x2000000002))
)
