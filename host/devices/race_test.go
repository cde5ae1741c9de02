//go:build race

package devices_test

// raceDetector is set when the tests run with the race detector, which
// makes everything several times slower: timing-bound tests scale their
// cycles by it.
const raceDetector = true
