package dmi

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubeedge/api/apis/devices/v1beta1"
	pb "github.com/kubeedge/api/apis/dmi/v1beta1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"wapper.dev/wapper/host/dmi/dmitest"
	"wapper.dev/wapper/host/manifest"
)

// BenchmarkDecodeConfigData decodes the protocol configData of the sample
// device (8 values, as edgecore wraps them).
func BenchmarkDecodeConfigData(b *testing.B) {
	set := manifest.Parse("sample.yaml", []byte(sampleYAML))
	cv := dmitest.Device(b, dmitest.JSONRoundTrip(b, set.Devices[0])).Spec.Protocol.ConfigData
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeConfigData("c", cv); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOutbox queues one twin report for each of 10,000 devices, then
// saves them in one transaction, as while edgecore is down.
func BenchmarkOutbox(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "s.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	o, err := openOutbox(db)
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([]*pb.ReportDeviceStatusRequest, 10000)
	for i := range reqs {
		reqs[i] = twinReq(fmt.Sprintf("dev-%05d", i), "temperature", "21.5", "humidity", "40")
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range reqs {
			o.putTwins(r)
		}
		if err := o.sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(reqs)), "ns/report")
}

// BenchmarkRegisterDevice registers devices over the DMI socket, from the
// stand-in edgecore to a running virtual-plugin device, one after another:
// each op is one RegisterDevice on a host that already holds the earlier
// ones.
func BenchmarkRegisterDevice(b *testing.B) {
	r := newRig(b, nil)
	r.createModel(b)
	mapper, ctx := r.mapper, context.Background()
	n := 0
	for b.Loop() {
		d := simDevice(fmt.Sprintf("bench-%06d", n), "")
		n++
		for i := range d.Spec.Properties {
			d.Spec.Properties[i].ReportToCloud = false
			d.Spec.Properties[i].CollectCycle = 60000 // measure registration, not polling
		}
		d.Spec.StateReport = &v1beta1.StateReportConfig{}
		pd := dmitest.Device(b, dmitest.JSONRoundTrip(b, d))
		if _, err := mapper.RegisterDevice(ctx, &pb.RegisterDeviceRequest{Device: pd}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMapperRegister registers the host with the stand-in edgecore
// holding N devices of one model, as after every reconnection: each op is
// one MapperRegister whose N devices the host already runs on the virtual
// plugin. first-ns/device is the first registration, which adds them.
// ns/device stays flat from 1,000 to 10,000 devices when registration is
// linear.
func BenchmarkMapperRegister(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			r := newRig(b, nil)
			m := r.createModel(b)
			for i := range n {
				d := simDevice(fmt.Sprintf("bench-%05d", i), "")
				for j := range d.Spec.Properties {
					d.Spec.Properties[j].ReportToCloud = false
					d.Spec.Properties[j].CollectCycle = 3_600_000 // measure registration, not polling
				}
				d.Spec.StateReport = &v1beta1.StateReportConfig{ReportCycle: 3_600_000} // nor state reports
				r.ec.Hold("default", d.Name, dmitest.Device(b, dmitest.JSONRoundTrip(b, d)), m)
			}
			conn, err := grpc.NewClient("unix://"+r.h.b.o.EdgecoreSocket, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRegisterResponse)))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			client, ctx := pb.NewDeviceManagerServiceClient(conn), context.Background()
			start := time.Now()
			if err := r.h.b.register(ctx, client, "virtual"); err != nil {
				b.Fatal(err)
			}
			first := time.Since(start)
			if got := len(r.h.mgr.Devices()); got != n {
				b.Fatalf("%d devices after the first registration, want %d", got, n)
			}
			b.ResetTimer()
			for b.Loop() {
				if err := r.h.b.register(ctx, client, "virtual"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/device")
			b.ReportMetric(float64(first.Nanoseconds())/float64(n), "first-ns/device")
		})
	}
}
