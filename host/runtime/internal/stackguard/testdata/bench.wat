;; Call-heavy code for the overhead benchmark.
(module
  (func $inc (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))

  ;; calls $inc n times in a tight loop
  (func (export "loop") (param $n i32) (result i32) (local $acc i32)
    (loop $l
      (local.set $acc (call $inc (local.get $acc)))
      (br_if $l (i32.lt_u (local.get $acc) (local.get $n))))
    (local.get $acc))

  ;; doubly recursive: fib(n) makes about 1.6^n calls
  (func $fib (export "fib") (param i32) (result i32)
    (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
      (then (local.get 0))
      (else (i32.add
        (call $fib (i32.sub (local.get 0) (i32.const 1)))
        (call $fib (i32.sub (local.get 0) (i32.const 2))))))))
