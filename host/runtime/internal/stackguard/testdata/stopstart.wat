;; A start function that never ends, for TestStopStart.
(module
  (import "env" "started" (func $started))
  (func $forever
    (call $started)
    (loop $l (br $l)))
  (start $forever))
