;; Recursion for the budget tests: rec(n) and rec_return(n) make n+1 frames.
(module
  (func $rec (export "rec") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 0))
      (else (i32.add (i32.const 1) (call $rec (i32.sub (local.get $n) (i32.const 1)))))))

  ;; The same with explicit returns inside a block, a loop and an if.
  (func $rec_return (export "rec_return") (param $n i32) (result i32)
    (block
      (loop
        (if (i32.eqz (local.get $n)) (then (return (i32.const 0))))
        (return (i32.add (i32.const 1)
          (call $rec_return (i32.sub (local.get $n) (i32.const 1)))))))
    (unreachable)))
