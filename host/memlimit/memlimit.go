// Package memlimit keeps wapper-host's heap near its live set with the Go
// runtime's soft memory limit (runtime/debug.SetMemoryLimit). The garbage
// collector then runs harder as the heap nears the limit, instead of
// letting the heap double past the live set at GOGC=100, which on a small
// gateway is the difference between fitting and being killed.
//
// The limit is set by wapper-host's --memory-limit ([Setting]):
//
//   - auto (the default): [DefaultBase] plus [DefaultPerDevice] for each
//     device the host runs, recomputed as the count changes;
//   - off or 0: no limit;
//   - a size such as 512MiB, 1GiB or 300000000: that limit.
//
// GOMEMLIMIT in the environment wins over all of these: the runtime has
// applied it already, and the [Limiter] only logs and reports it.
//
// A soft limit is not a cap: when the live set itself outgrows it, the
// runtime lets the heap grow (bounding the GC's CPU share) rather than fail.
package memlimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The auto limit is DefaultBase + DefaultPerDevice × devices, about 1.6
// times the live heap measured with bin/wapper-host (linux/amd64, the
// virtual plugin with two instances, devices of three properties collected
// and reported every second, embedded broker and REST on). The live heap
// is go_memstats_heap_alloc_bytes right after a forced collection
// (/debug/pprof/heap?gc=1), read three times 40 s after start:
//
//	devices running   live heap
//	0                 40 MiB
//	300               52-58 MiB
//	~800 (of 1,200)   69-75 MiB
//
// that is 40 MiB plus 45-60 KiB per device. The 1.6 leaves room for plugin
// instances being replaced, compilation, bursts of API requests and twins
// waiting to be saved, while keeping the heap well under the doubling of
// the live set that GOGC=100 alone allows.
const (
	// DefaultBase is the auto limit of a host with no device.
	DefaultBase = 64 << 20
	// DefaultPerDevice is what the auto limit grows by per device.
	DefaultPerDevice = 80 << 10
)

// DefaultInterval is how often a Limiter in auto mode looks at the device
// count.
const DefaultInterval = 5 * time.Second

// Mode says where the limit comes from.
type Mode int

// The modes of a Setting.
const (
	// Auto derives the limit from the device count (the zero value).
	Auto Mode = iota
	// Off sets no limit.
	Off
	// Fixed sets Setting.Bytes.
	Fixed
)

// Setting is the value of --memory-limit: auto, off (or 0), or a size.
type Setting struct {
	Mode  Mode
	Bytes int64 // with Fixed
}

// String returns the setting as Set accepts it.
func (s *Setting) String() string {
	switch s.Mode {
	case Off:
		return "off"
	case Fixed:
		return formatSize(s.Bytes)
	}
	return "auto"
}

// Type names the value in --help.
func (*Setting) Type() string { return "auto|off|size" }

// Set parses auto, off, 0, or a size: a number of bytes with an optional
// unit B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of
// 1000), as GOMEMLIMIT spells them.
func (s *Setting) Set(v string) error {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "auto":
		*s = Setting{Mode: Auto}
		return nil
	case "off", "0":
		*s = Setting{Mode: Off}
		return nil
	}
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = Setting{Mode: Fixed, Bytes: n}
	return nil
}

var units = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"b", 1},
}

// ParseSize parses a positive size such as 512MiB, 2GB or 300000000.
func ParseSize(v string) (int64, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q: want auto, off, or a size such as 512MiB or 1GiB", v)
	}
	return n * mult, nil
}

// formatSize writes n with the largest binary unit that divides it.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// For returns the auto limit for n devices.
func For(n int) int64 { return DefaultBase + DefaultPerDevice*int64(max(n, 0)) }

// Options configure a Limiter.
type Options struct {
	// Setting is --memory-limit.
	Setting Setting
	// Devices returns the number of devices the host runs; required in
	// auto mode.
	Devices func() int
	// Interval is how often auto mode looks at the count (default
	// DefaultInterval).
	Interval time.Duration
	// Logger receives a line when the limit is set or changes (default
	// slog.Default()).
	Logger *slog.Logger
	// Registerer, when set, receives the gauge wapper_memory_limit_bytes.
	Registerer prometheus.Registerer

	// lookupEnv and setMemoryLimit stand for os.LookupEnv and
	// debug.SetMemoryLimit (tests replace them).
	lookupEnv      func(string) (string, bool)
	setMemoryLimit func(int64) int64
	// tick, when set, replaces the ticker of Interval (tests).
	tick <-chan time.Time
}

// Limiter applies the limit a Setting asks for and keeps the auto limit
// in step with the device count.
type Limiter struct {
	o     Options
	log   *slog.Logger
	gauge prometheus.Gauge
	env   string // GOMEMLIMIT, when set

	mu      sync.Mutex // guards the fields below
	last    int64      // the limit the setting asks for; -1 before the first Update
	applied int64      // the limit in force: last, or none while loosened
	loose   int        // Loosen calls not done yet
}

// New returns a Limiter; Run applies the limit.
func New(o Options) (*Limiter, error) {
	if o.Setting.Mode == Auto && o.Devices == nil {
		return nil, errors.New("memlimit: auto mode needs Options.Devices")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.lookupEnv == nil {
		o.lookupEnv = os.LookupEnv
	}
	if o.setMemoryLimit == nil {
		o.setMemoryLimit = debug.SetMemoryLimit
	}
	l := &Limiter{o: o, log: o.Logger, last: -1, applied: -1,
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "wapper_memory_limit_bytes",
			Help: "The Go runtime's soft memory limit (--memory-limit, or GOMEMLIMIT); 0 when there is none."})}
	if v, ok := o.lookupEnv("GOMEMLIMIT"); ok && v != "" {
		l.env = v
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(l.gauge); err != nil {
			return nil, fmt.Errorf("memlimit: register metrics: %w", err)
		}
	}
	return l, nil
}

// Update applies the limit the setting asks for now and returns it (0 for
// none). Run calls it; it is exported for callers that know the count
// changed.
func (l *Limiter) Update() int64 {
	var want int64
	switch {
	case l.env != "":
		want = l.o.setMemoryLimit(-1) // the runtime's, from GOMEMLIMIT
	case l.o.Setting.Mode == Off:
		want = math.MaxInt64
	case l.o.Setting.Mode == Fixed:
		want = l.o.Setting.Bytes
	default:
		want = For(l.o.Devices())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if want == l.last {
		return shown(want)
	}
	first := l.last < 0
	l.last = want
	l.applyLocked()
	switch {
	case l.env != "" && first:
		l.log.Info("memory limit from GOMEMLIMIT; --memory-limit ignored", "GOMEMLIMIT", l.env, "limit-bytes", shown(want), "memory-limit", l.o.Setting.String())
	case want == math.MaxInt64:
		l.log.Info("no memory limit (--memory-limit off)")
	case first:
		l.log.Info("memory limit set", "limit", formatSize(want), "memory-limit", l.o.Setting.String())
	default:
		l.log.Debug("memory limit changed with the device count", "limit", formatSize(want))
	}
	return shown(want)
}

// Loosen lifts the limit until done is called, for a short transient
// that allocates far beyond the live set: compiling a plugin's module
// (see runtime.EngineOptions.OnLoad). Near the limit, the collector would
// run without pause through a compile, taking up to half the CPU and
// making every allocating goroutine assist it: devices then miss their
// cycles, and the compile takes three times as long. GOGC still bounds
// the heap meanwhile. Loosens nest; the limit returns when the last is
// done. GOMEMLIMIT is never lifted.
func (l *Limiter) Loosen() (done func()) {
	l.mu.Lock()
	l.loose++
	l.applyLocked()
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.loose--
			l.applyLocked()
			l.mu.Unlock()
		})
	}
}

// applyLocked sets the runtime's limit to what is in force now: none
// while loosened, else the last one Update computed. Callers hold l.mu.
func (l *Limiter) applyLocked() {
	if l.last < 0 {
		return
	}
	want := l.last
	if l.loose > 0 && l.env == "" {
		want = math.MaxInt64
	}
	if want == l.applied {
		return
	}
	l.applied = want
	if l.env == "" {
		l.o.setMemoryLimit(want)
	}
	l.gauge.Set(float64(shown(want)))
}

// shown is the limit as the gauge shows it: 0 for none.
func shown(n int64) int64 {
	if n == math.MaxInt64 {
		return 0
	}
	return n
}

// Run applies the limit, keeps the auto limit in step with the device
// count until ctx ends, and returns nil then. It leaves the last limit in
// place: the host is stopping.
func (l *Limiter) Run(ctx context.Context) error {
	l.Update()
	if l.env != "" || l.o.Setting.Mode != Auto {
		<-ctx.Done()
		return nil
	}
	tick := l.o.tick
	if tick == nil {
		t := time.NewTicker(l.o.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			l.Update()
		}
	}
}
