package cloudlink_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	devicesv1beta1 "github.com/kubeedge/api/apis/devices/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"wapper.dev/wapper/cloud/hub"
	"wapper.dev/wapper/host/cloudlink"
	"wapper.dev/wapper/linkproto"
)

// TestCompressedLink: a host asking for permessage-deflate
// (Options.Compression) offers it in its handshake, and with a hub that
// offers it too the session delivers objects and reports as without it.
func TestCompressedLink(t *testing.T) {
	dev := &devicesv1beta1.Device{
		TypeMeta:   metav1.TypeMeta{APIVersion: devicesv1beta1.SchemeGroupVersion.String(), Kind: "Device"},
		ObjectMeta: metav1.ObjectMeta{Name: "d1", Namespace: "ns"},
		Spec:       devicesv1beta1.DeviceSpec{NodeName: "n1", Properties: []devicesv1beta1.DeviceProperty{{Name: "setpoint", Desired: devicesv1beta1.TwinProperty{Value: "20"}}}},
	}
	obj, err := json.Marshal(dev)
	if err != nil {
		t.Fatal(err)
	}
	key := linkproto.Key(linkproto.KindDevice, "ns", "d1")
	desired := map[string]linkproto.Item{key: {Key: key, Version: "v1", Object: obj}}

	var h *hub.Hub
	h = hub.New(hub.Options{
		Auth: hub.Tokens{"n1": "tok"}, Compression: true,
		OnConnect: func(node string) { h.SetDesired(node, desired) },
		Logger:    slog.New(slog.DiscardHandler),
	})
	var (
		mu      sync.Mutex
		offered []string
	)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		offered = append(offered, r.Header.Get("Sec-WebSocket-Extensions"))
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	sk := newSink()
	link, err := cloudlink.New(cloudlink.Options{
		URL: srv.URL, Node: "n1", Token: "tok", TLS: &tls.Config{RootCAs: pool},
		DB: openDB(t, filepath.Join(t.TempDir(), "host.db")), Sink: sk, Compression: true,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := link.Run(ctx); err != nil {
			t.Errorf("link: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })

	sk.wait(t, "the device, over a compressed link", func(s cloudlink.Set) bool {
		return desiredOf(s, "d1", "setpoint") == "20"
	})
	must(t, link.ReportDevice(linkproto.DeviceReport{Namespace: "ns", Name: "d1", State: "ok",
		Twins: []devicesv1beta1.Twin{{PropertyName: "setpoint", Reported: devicesv1beta1.TwinProperty{Value: "20"}}}}))
	waitUntil(t, "the report acknowledged", func() (bool, error) { return link.Pending() == 0, nil })
	waitUntil(t, "the hub to hold the host in sync", func() (bool, error) { return h.InSync("n1"), nil })

	mu.Lock()
	defer mu.Unlock()
	if len(offered) == 0 || !strings.Contains(offered[0], "permessage-deflate") {
		t.Errorf("the host's handshakes offered extensions %q, want permessage-deflate", offered)
	}
}
