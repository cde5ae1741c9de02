package dmi

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// maxRegisterResponse bounds a MapperRegister response. Edgecore lists
// every device of the protocol with its model, about half a kilobyte each:
// gRPC's default of 4 MiB refused the registration of some 8,000 devices.
const maxRegisterResponse = 256 << 20

// connectLoop keeps a connection to edgecore, registers every protocol on
// each new connection and each new protocol, and runs the sender.
func (b *Bridge) connectLoop(ctx context.Context) error {
	conn, err := grpc.NewClient("unix://"+b.o.EdgecoreSocket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
		grpc.WithIdleTimeout(0),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRegisterResponse)),
	)
	if err != nil {
		return fmt.Errorf("edgecore socket %s: %w", b.o.EdgecoreSocket, err)
	}
	defer func() {
		if err := conn.Close(); err != nil {
			b.log.Debug("close the connection to edgecore", "err", err)
		}
	}()
	client := pb.NewDeviceManagerServiceClient(conn)
	go b.sendLoop(ctx, client)

	registered := map[string]bool{} // protocols registered on this connection
	wasReady := false
	retry := time.Duration(0)
	for ctx.Err() == nil {
		select {
		case <-b.reregister:
			registered = map[string]bool{}
		default:
		}
		st := conn.GetState()
		if st == connectivity.Ready {
			if !wasReady {
				b.log.Info("connected to edgecore", "socket", b.o.EdgecoreSocket)
				wasReady = true
				registered = map[string]bool{}
			}
			// Every protocol is tried on each pass; reports flow after the
			// first pass even if a registration failed (edgecore takes
			// reports from any mapper), and failed ones are retried.
			all := true
			for _, p := range b.o.Devices.Protocols() {
				if registered[p] {
					continue
				}
				if err := b.register(ctx, client, p); err != nil {
					b.log.Warn("register with edgecore failed; retrying", "protocol", p, "err", err)
					all = false
					continue
				}
				registered[p] = true
			}
			b.ready.set(true)
			if all {
				b.m.connected.Set(1)
				retry = 0
			} else {
				b.m.connected.Set(0)
				retry = min(max(2*retry, 200*time.Millisecond), 5*time.Second)
			}
		} else {
			if wasReady {
				b.log.Warn("lost edgecore; reports wait in the outbox until it returns", "socket", b.o.EdgecoreSocket, "state", st)
			}
			wasReady = false
			b.ready.set(false)
			b.m.connected.Set(0)
			if st == connectivity.Idle {
				conn.Connect()
			}
		}
		wait := b.o.ProtocolPoll
		if retry > 0 {
			wait = retry
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		conn.WaitForStateChange(wctx, st)
		cancel()
	}
	return nil
}

// register registers the bridge as the mapper for one protocol and
// applies what edgecore returns: its devices of that protocol and their
// models. Devices of that protocol that edgecore no longer lists are
// removed, unless edgecore sent them (RegisterDevice, UpdateDevice) while
// the registration was under way: the answer does not know them yet.
func (b *Bridge) register(ctx context.Context, c pb.DeviceManagerServiceClient, protocol string) error {
	b.mu.Lock()
	since := b.heldSeq
	b.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.MapperRegister(cctx, &pb.MapperRegisterRequest{
		WithData: true,
		Mapper: &pb.MapperInfo{
			Name:       b.o.Name + "-" + mapperName(protocol),
			Version:    b.o.Version,
			ApiVersion: "v1beta1",
			Protocol:   protocol,
			Address:    []byte(b.o.Socket),
			State:      "ok",
		},
	})
	if err != nil {
		b.m.registrations.WithLabelValues(protocol, "error").Inc()
		return fmt.Errorf("MapperRegister: %s", status.Convert(err).Message())
	}
	b.m.registrations.WithLabelValues(protocol, "ok").Inc()
	// Edgecore lists a device's model with each device: put each model
	// once.
	models := map[string]*pb.DeviceModel{}
	var order []string
	for _, m := range resp.ModelList {
		k := id(m.GetNamespace(), m.GetName())
		if _, ok := models[k]; !ok {
			order = append(order, k)
		}
		models[k] = m
	}
	for _, k := range order {
		m := models[k]
		if err := b.putModel(ctx, m); err != nil {
			b.log.Warn("model from edgecore refused", "model", id(m.GetNamespace(), m.GetName()), "err", status.Convert(err).Message())
		}
	}
	listed := map[string]bool{}
	for _, d := range resp.DeviceList {
		listed[id(d.GetNamespace(), d.GetName())] = true
	}
	// The devices are applied one by one, each at a cost that does not
	// grow with their number, and saved together.
	b.applyMu.Lock()
	held := b.admitAll(ctx, resp.DeviceList, func(d *pb.Device, _ bool, err error) {
		b.log.Warn("device from edgecore refused", "device", id(d.GetNamespace(), d.GetName()), "err", status.Convert(err).Message())
	})
	serr := b.saveDevices(held)
	b.applyMu.Unlock()
	if serr != nil {
		b.log.Error("save the devices edgecore listed; they are restored after a restart only once edgecore lists them again", "err", serr)
	}
	b.mu.Lock()
	var stale []string
	for k, h := range b.devices {
		if h.protocol == protocol && !listed[k] && h.seq <= since {
			stale = append(stale, k)
		}
	}
	b.mu.Unlock()
	slices.Sort(stale)
	for _, k := range stale {
		ns, name, _ := strings.Cut(k, "/")
		if err := b.removeDevice(ctx, ns, name); err != nil {
			b.log.Warn("remove device edgecore no longer lists", "device", k, "err", status.Convert(err).Message())
		}
	}
	b.log.Info("registered with edgecore", "protocol", protocol, "devices", len(resp.DeviceList), "models", len(resp.ModelList), "removed", len(stale))
	return nil
}

// mapperName makes a protocol usable in a mapper name, which edgecore
// uses as a key: one name per protocol, so registrations never replace
// each other.
func mapperName(protocol string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, protocol)
}
