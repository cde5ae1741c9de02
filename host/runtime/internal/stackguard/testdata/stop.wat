;; Guests that never end on their own, for TestStopFlag: each calls
;; env.started once, then runs until the stop flag stops it.
(module
  (import "env" "started" (func $started))
  ;; The tightest loop: a branch to itself.
  (func (export "spin")
    (call $started)
    (loop $l (br $l)))
  ;; A loop that only does arithmetic on locals, with no call or global in
  ;; its body; it would end after 2^64 iterations.
  (func (export "count") (result i64) (local $i i64) (local $x i64)
    (call $started)
    (local.set $i (i64.const 1))
    (loop $l
      (local.set $x (i64.xor (local.get $x) (i64.mul (local.get $i) (i64.const 0x9e3779b97f4a7c15))))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br_if $l (i64.ne (local.get $i) (i64.const 0))))
    (local.get $x))
  ;; Exponential recursion without a loop: fib(60) makes about 3.6e12 calls.
  (func $fib (param $n i64) (result i64)
    (if (result i64) (i64.lt_u (local.get $n) (i64.const 2))
      (then (local.get $n))
      (else (i64.add
        (call $fib (i64.sub (local.get $n) (i64.const 1)))
        (call $fib (i64.sub (local.get $n) (i64.const 2)))))))
  (func (export "fib60") (result i64)
    (call $started)
    (call $fib (i64.const 60)))
  (func (export "one") (result i32) (i32.const 1)))
