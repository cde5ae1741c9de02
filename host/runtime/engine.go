package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/tetratelabs/wazero"
)

// Engine owns what every plugin shares: the compilation cache, the logger
// and the metrics.
type Engine struct {
	cache   wazero.CompilationCache
	log     *slog.Logger
	metrics *Metrics
	epoch   time.Time
	onLoad  func() (done func())
}

// EngineOptions configure an Engine.
type EngineOptions struct {
	// CacheDir holds compiled code across restarts; empty keeps it in
	// memory only.
	CacheDir string
	// Logger receives runtime and plugin logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics receives counters (default: unregistered collectors).
	Metrics *Metrics
	// OnLoad, when set, is called as Load starts compiling a module, and
	// the func it returns once the module is compiled and its first
	// instance made (or the load failed). wapper-host lifts its soft
	// memory limit meanwhile: a compile's garbage would otherwise keep
	// the collector running near the limit and slow every device's
	// reads (see host/memlimit).
	OnLoad func() (done func())
}

// NewEngine creates an Engine.
func NewEngine(opts EngineOptions) (*Engine, error) {
	e := &Engine{log: opts.Logger, metrics: opts.Metrics, epoch: time.Now(), onLoad: opts.OnLoad}
	if e.log == nil {
		e.log = slog.Default()
	}
	if e.metrics == nil {
		e.metrics = NewMetrics(nil)
	}
	if opts.CacheDir == "" {
		e.cache = wazero.NewCompilationCache()
		return e, nil
	}
	if err := os.MkdirAll(opts.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("create compile cache dir: %w", err)
	}
	c, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("open compile cache %s: %w", opts.CacheDir, err)
	}
	e.cache = c
	return e, nil
}

// Close releases the compilation cache. Close every Plugin first.
func (e *Engine) Close(ctx context.Context) error { return e.cache.Close(ctx) }
