package manifest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch calls apply with a fresh Set whenever a manifest file in dir is
// created, written, renamed or removed, after events have been quiet for
// debounce. It returns when ctx is done. The initial load is the caller's,
// made at loaded: a change made between then and the moment the watch is
// in place (the folder or a manifest file modified since) is picked up by
// a load right after.
func Watch(ctx context.Context, dir string, loaded time.Time, debounce time.Duration, log *slog.Logger, apply func(*Set)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch manifest folder: %w", err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch manifest folder %s: %w", dir, err)
	}
	if debounce <= 0 {
		debounce = 200 * time.Millisecond
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	if changedSince(dir, loaded) {
		timer.Reset(debounce)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			base := filepath.Base(ev.Name)
			if !IsManifestFile(base) || base[0] == '.' || ev.Op == fsnotify.Chmod {
				continue
			}
			log.Debug("manifest change", "file", ev.Name, "op", ev.Op.String())
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Warn("manifest watch error; changes may be missed until the next change", "err", err)
		case <-timer.C:
			set, err := Load(dir)
			if err != nil {
				log.Error("reload manifests", "err", err)
				continue
			}
			apply(set)
		}
	}
}

// changedSince reports whether dir, or a manifest file in it, was modified
// at or after t (to the file system's time resolution); an unreadable
// folder counts as changed.
func changedSince(dir string, t time.Time) bool {
	t = t.Add(-time.Second) // coarse file system clocks
	fi, err := os.Stat(dir)
	if err != nil || !fi.ModTime().Before(t) {
		return true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return true
	}
	for _, e := range entries {
		if !IsManifestFile(e.Name()) {
			continue
		}
		if info, err := e.Info(); err != nil || !info.ModTime().Before(t) {
			return true
		}
	}
	return false
}
