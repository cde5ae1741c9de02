//go:build !unix

package store

import (
	"os"
	"time"
)

// lockFile does nothing where flock is missing; bbolt locks the file its
// own way when it opens it.
func lockFile(*os.File, time.Duration) error { return nil }
