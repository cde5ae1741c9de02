package dmi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
)

// Defaults for [Options].
const (
	// DefaultSocket is where the bridge serves DeviceMapperService.
	DefaultSocket = "/etc/kubeedge/wapper.sock"
	// DefaultEdgecoreSocket is edgecore's DeviceManagerService
	// (edgecore's modules.deviceTwin.dmiSockPath).
	DefaultEdgecoreSocket = "/etc/kubeedge/dmi.sock"
	// DefaultMaxMessageBytes bounds a request from edgecore.
	DefaultMaxMessageBytes = 4 << 20
	// DefaultReportRate and DefaultReportBurst pace reports below
	// edgecore's limiter, which allows 1 call a second with bursts of 100
	// for all mappers of a node together.
	DefaultReportRate  = 1.0
	DefaultReportBurst = 50
	// DefaultReportCycle applies to a property whose collectCycle is
	// zero and a state whose stateReport cycle is zero, as
	// mapper-framework's DefaultCollectCycle and DefaultReportCycle.
	DefaultReportCycle = time.Second
	// DefaultModelWait is how long RegisterDevice waits for its model, as
	// mapper-framework does, before failing.
	DefaultModelWait = 3 * time.Second
)

// Options configure a [Bridge].
type Options struct {
	// Devices is the host's device manager. Required.
	Devices Devices
	// DB holds the outbox and the devices and models received over DMI.
	// Required.
	DB *bolt.DB
	// Socket is the unix socket to serve DeviceMapperService on; it is
	// sent to edgecore as MapperInfo.address. Default DefaultSocket.
	Socket string
	// EdgecoreSocket is edgecore's DMI socket. Default
	// DefaultEdgecoreSocket.
	EdgecoreSocket string
	// Name prefixes the mapper name registered for each protocol
	// ("wapper" gives "wapper-modbus"); Version is sent as its version.
	Name, Version string
	// MaxMessageBytes bounds a request from edgecore.
	MaxMessageBytes int
	// ReportRate (calls a second) and ReportBurst pace calls to edgecore.
	ReportRate  float64
	ReportBurst int
	// DefaultReportCycle replaces a zero collectCycle (twin reports) or
	// stateReport cycle (state reports).
	DefaultReportCycle time.Duration
	// ModelWait is how long RegisterDevice waits for a missing model.
	ModelWait time.Duration
	// ProtocolPoll is how often the bridge looks for new protocols
	// (default 1 s); SyncInterval how often the outbox is saved
	// (default 1 s).
	ProtocolPoll, SyncInterval time.Duration
	// Logger defaults to slog.Default(); Metrics to unregistered metrics.
	Logger  *slog.Logger
	Metrics *Metrics
}

// Bridge connects the device manager to edgecore over DMI.
type Bridge struct {
	o   Options
	log *slog.Logger
	m   *Metrics

	out     *outbox
	limiter *rate.Limiter
	ready   gate // open while edgecore is connected and every protocol was tried

	// reregister asks the registration loop to register every protocol
	// again (the sender saw edgecore go away).
	reregister chan struct{}

	applyMu sync.Mutex // serialises changes to devices and models
	mu      sync.Mutex // guards models, devices, runCtx
	models  map[string]*pb.DeviceModel
	devices map[string]*held
	heldSeq uint64 // counts the devices held or changed (held.seq)
	runCtx  context.Context
	reports sync.WaitGroup
}

// held is a device received over DMI.
type held struct {
	dev      *pb.Device
	protocol string
	seq      uint64 // Bridge.heldSeq when it was held or last changed
	stop     context.CancelFunc
	done     chan struct{}
}

// New checks the options and opens the outbox. Call Run to serve.
func New(o Options) (*Bridge, error) {
	if o.Devices == nil || o.DB == nil {
		return nil, errors.New("dmi: Options.Devices and Options.DB are required")
	}
	if o.Socket == "" {
		o.Socket = DefaultSocket
	}
	if o.EdgecoreSocket == "" {
		o.EdgecoreSocket = DefaultEdgecoreSocket
	}
	if o.Name == "" {
		o.Name = "wapper"
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.ReportRate <= 0 {
		o.ReportRate = DefaultReportRate
	}
	if o.ReportBurst <= 0 {
		o.ReportBurst = DefaultReportBurst
	}
	if o.DefaultReportCycle <= 0 {
		o.DefaultReportCycle = DefaultReportCycle
	}
	if o.ModelWait < 0 {
		o.ModelWait = 0
	} else if o.ModelWait == 0 {
		o.ModelWait = DefaultModelWait
	}
	if o.ProtocolPoll <= 0 {
		o.ProtocolPoll = time.Second
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	var err error
	if o.Socket, err = filepath.Abs(o.Socket); err != nil {
		return nil, fmt.Errorf("dmi socket: %w", err)
	}
	if o.EdgecoreSocket, err = filepath.Abs(o.EdgecoreSocket); err != nil {
		return nil, fmt.Errorf("edgecore socket: %w", err)
	}
	b := &Bridge{
		o: o, log: o.Logger.With("component", "dmi"), m: o.Metrics,
		limiter:    rate.NewLimiter(rate.Limit(o.ReportRate), o.ReportBurst),
		reregister: make(chan struct{}, 1),
		models:     map[string]*pb.DeviceModel{},
		devices:    map[string]*held{},
	}
	b.ready.init()
	if b.out, err = openOutbox(o.DB); err != nil {
		return nil, err
	}
	b.m.observeOutbox(b.out)
	return b, nil
}

// Socket is the path the bridge serves on.
func (b *Bridge) Socket() string { return b.o.Socket }

// Run serves DeviceMapperService, registers with edgecore and reports,
// until ctx ends. The outbox is saved before it returns.
func (b *Bridge) Run(ctx context.Context) error {
	lis, err := listenUnix(b.o.Socket)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(
		grpc.MaxRecvMsgSize(b.o.MaxMessageBytes),
		grpc.ChainUnaryInterceptor(b.observe),
	)
	pb.RegisterDeviceMapperServiceServer(srv, &server{b: b})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.mu.Lock()
	b.runCtx = ctx
	b.mu.Unlock()
	if err := b.restore(ctx); err != nil {
		return errors.Join(err, lis.Close())
	}
	b.log.Info("serving DMI", "socket", b.o.Socket, "edgecore", b.o.EdgecoreSocket)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serve DMI on %s: %w", b.o.Socket, err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		srv.GracefulStop()
		if err := os.Remove(b.o.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
			b.log.Warn("remove DMI socket", "socket", b.o.Socket, "err", err)
		}
		return nil
	})
	g.Go(func() error { return b.connectLoop(gctx) })
	g.Go(func() error { b.syncLoop(gctx); return nil })
	err = g.Wait()
	b.reports.Wait()
	if serr := b.out.sync(); serr != nil {
		b.log.Error("save outbox", "err", serr)
	}
	return err
}

// listenUnix listens on path, replacing a stale socket left by a crash.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create directory for DMI socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("DMI socket %s exists and is not a socket; remove it or choose another --dmi-socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			return nil, errors.Join(fmt.Errorf("DMI socket %s is in use by another process; stop it or choose another --dmi-socket", path), c.Close())
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove the stale DMI socket: %w", err)
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on DMI socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		return nil, errors.Join(fmt.Errorf("DMI socket permissions: %w", err), lis.Close())
	}
	return lis, nil
}

// syncLoop saves the outbox every SyncInterval.
func (b *Bridge) syncLoop(ctx context.Context) {
	t := time.NewTicker(b.o.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := b.out.sync(); err != nil {
				b.log.Error("save outbox", "err", err)
			}
			b.m.observeOutbox(b.out)
		}
	}
}

// gate is a condition that goroutines wait on.
type gate struct {
	mu   sync.Mutex // guards open and ch
	open bool
	ch   chan struct{} // closed while open
}

func (g *gate) init() { g.ch = make(chan struct{}) }

func (g *gate) set(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if open == g.open {
		return
	}
	g.open = open
	if open {
		close(g.ch)
	} else {
		g.ch = make(chan struct{})
	}
}

func (g *gate) isOpen() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

// wait returns when the gate is open or ctx ends.
func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	ch := g.ch
	g.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
