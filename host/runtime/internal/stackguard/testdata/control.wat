;; Control flow that the rewrite must keep intact: returns at every depth,
;; branches to the function's own label, multi-value results, br_table and
;; call_indirect. Every export takes (i32 i32) and is called with many inputs.
(module
  (type $bin (func (param i32 i32) (result i32)))
  (type $pair (func (result i32 i32)))
  (table 4 4 funcref)
  (elem (i32.const 0) $add $sub $early $deep)
  (memory (export "memory") 1 1)

  (func $add (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func $sub (param i32 i32) (result i32) (return (i32.sub (local.get 0) (local.get 1))))
  (func $early (param i32 i32) (result i32)
    (if (i32.gt_s (local.get 0) (local.get 1)) (then (return (local.get 0))))
    (local.get 1))
  (func $deep (param i32 i32) (result i32)
    (block $a (result i32)
      (block $b
        (loop $l
          (if (i32.eqz (local.get 1)) (then (return (i32.const -1))))
          (local.set 1 (i32.sub (local.get 1) (i32.const 1)))
          (local.set 0 (i32.add (local.get 0) (i32.const 3)))
          (br_if $b (i32.gt_u (local.get 0) (i32.const 100)))
          (br $l)))
      (i32.const 7))
    (i32.add (local.get 0)))

  ;; return with extra values under the results, at several depths
  (func (export "nested") (param i32 i32) (result i32)
    (local.set 1 (i32.and (local.get 1) (i32.const 63)))
    (i32.const 111)
    (block (result i32)
      (i32.const 222)
      (loop (result i32)
        (i32.const 333)
        (if (result i32) (i32.and (local.get 0) (i32.const 1))
          (then (i32.const 444) (return (i32.mul (local.get 0) (local.get 1))))
          (else
            (if (i32.and (local.get 0) (i32.const 2))
              (then (return (i32.add (local.get 1) (i32.const 5)))))
            (i32.const 9)))
        (drop)
        (drop)
        (if (i32.gt_u (local.get 1) (i32.const 10))
          (then (local.set 1 (i32.sub (local.get 1) (i32.const 3))) (br 1)))
        (local.get 1))
      (drop))
    (drop)
    (drop)
    (i32.sub (local.get 1) (local.get 0)))

  ;; br and br_if to the function's label from inside blocks
  (func (export "br_func") (param i32 i32) (result i32)
    (block
      (block
        (drop (br_if 2 (i32.mul (local.get 0) (i32.const 3)) (i32.eq (local.get 1) (i32.const 4))))
        (if (i32.lt_s (local.get 0) (i32.const 0))
          (then (br 3 (i32.const 42))))
        (br_if 0 (local.get 1)))
      (br 1 (i32.const 13)))
    (i32.add (local.get 0) (local.get 1)))

  ;; br_table whose targets include the function label, with returns
  (func (export "table") (param i32 i32) (result i32)
    (block $d (result i32)
      (block $c (result i32)
        (block $b (result i32)
          (block $a (result i32)
            (br_table $a $b $c 4 $d
              (i32.mul (local.get 1) (i32.const 3))
              (i32.and (local.get 0) (i32.const 7))))
          (return (i32.add (i32.const 10))))
        (if (local.get 1) (then (return (i32.const 20))))
        (br 1 (i32.add (i32.const 21))))
      (i32.const 30)
      (i32.add))
    (i32.add (local.get 1)))

  ;; call_indirect through the table, the callees returning early
  (func (export "indirect") (param i32 i32) (result i32)
    (call_indirect (type $bin) (local.get 0) (local.get 1) (i32.and (local.get 0) (i32.const 3))))

  ;; multi-value results from a function with parameters: the wrapper
  ;; block needs a type [] -> [i32 i64 f64] that the module lacks
  (func $multi (param i32 i32) (result i32 i64 f64)
    (if (i32.gt_s (local.get 0) (local.get 1))
      (then (return (local.get 1) (i64.extend_i32_s (local.get 0)) (f64.const 1.5))))
    (block (result i32 i64)
      (local.get 0)
      (i64.const 77)
      (br_if 0 (i32.eqz (local.get 1)))
      (return (i32.const 5) (i64.const 6) (f64.const 7)))
    (f64.convert_i32_s (local.get 1)))
  (func (export "multi") (param i32 i32) (result i32)
    (local $b i64) (local $c f64)
    (call $multi (local.get 0) (local.get 1))
    (local.set $c)
    (local.set $b)
    (i32.add (i32.wrap_i64 (local.get $b)))
    (i32.add (i32.trunc_f64_s (local.get $c))))

  ;; multi-value without parameters: the wrapper uses the function's type
  (func $pair (type $pair)
    (i32.const 3)
    (i32.const 4)
    (return))
  (func (export "pair") (param i32 i32) (result i32)
    (call $pair)
    (i32.mul)
    (i32.add (local.get 0)))

  ;; a block with parameters and a return inside
  (func (export "block_params") (param i32 i32) (result i32)
    (local.get 0)
    (local.get 1)
    (block (param i32 i32) (result i32)
      (if (param i32 i32) (result i32) (i32.lt_s (local.get 0) (i32.const 0))
        (then (drop) (drop) (return (i32.const -7)))
        (else (i32.sub))))
    (i32.const 1)
    (i32.add))

  ;; a function without results that returns early; the caller reads memory
  (func $store (param i32 i32)
    (if (i32.eqz (local.get 1)) (then (return)))
    (i32.store (i32.const 0) (i32.add (local.get 0) (local.get 1)))
    (return)
    (unreachable))
  (func (export "void") (param i32 i32) (result i32)
    (i32.store (i32.const 0) (i32.const 0))
    (call $store (local.get 0) (local.get 1))
    (i32.load (i32.const 0)))

  ;; code after a return, and a return as the last instruction
  (func (export "dead") (param i32 i32) (result i32)
    (return (i32.xor (local.get 0) (local.get 1)))
    (drop (i32.const 1))
    (i32.const 2)
    (return))

  ;; recursion through call_indirect
  (func $fact (param i32 i32) (result i32)
    (if (result i32) (i32.le_s (local.get 0) (i32.const 1))
      (then (return (i32.const 1)))
      (else (i32.mul (local.get 0)
        (call_indirect $t2 (type $bin) (i32.sub (local.get 0) (i32.const 1)) (i32.const 0) (i32.const 4))))))
  (table $t2 (export "t2") 8 8 funcref)
  (elem (table $t2) (i32.const 4) func $fact)
  (func (export "fact") (param i32 i32) (result i32)
    (call $fact (i32.and (local.get 0) (i32.const 15)) (i32.const 0))))
