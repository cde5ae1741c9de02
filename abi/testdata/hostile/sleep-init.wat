;; _initialize sleeps for 10 minutes in WASI poll_oneoff. Unless the host
;; bounds the sleep by the instantiation deadline, loading the plugin
;; (and whatever waits for that load) takes 10 minutes.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "\00\01\00\00\00\00\00\00\00\00")
  (data (i32.const 32) "\00\01")
  ;; See sleep-read.wat for the subscription's layout.
  (func $sleep (param $ns i64) (result i32)
    (memory.fill (i32.const 256) (i32.const 0) (i32.const 48))
    (i32.store (i32.const 272) (i32.const 1))
    (i64.store (i32.const 280) (local.get $ns))
    (call $poll_oneoff (i32.const 256) (i32.const 512) (i32.const 1) (i32.const 600)))
  (func (export "_initialize")
    (i64.store (i32.const 18)
      (i64.extend_i32_u (call $sleep (i64.const 600000000000)))))
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
    (i64.const 0x100000000a))
  (func (export "wapper_write") (param i32 i32 i32 i32) (result i64) (i64.const 0))
  (func (export "wapper_device_state") (param i32) (result i64) (i64.const 0x2000000002))
)
