package manifest

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch calls apply with a fresh Set whenever a manifest file in dir is
// created, written, renamed or removed, after events have been quiet for
// debounce. It returns when ctx is done. The initial load is the caller's.
func Watch(ctx context.Context, dir string, debounce time.Duration, log *slog.Logger, apply func(*Set)) error {
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
