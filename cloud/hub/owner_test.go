package hub_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wapper.dev/wapper/cloud/hub"
)

// heldErr is another replica's hold on a node.
type heldErr struct{ retry time.Duration }

func (e heldErr) Error() string             { return "node-b is served by replica r2" }
func (e heldErr) RetryAfter() time.Duration { return e.retry }

// owner serves node-a and refuses node-b; it counts claims and releases.
type owner struct {
	mu               sync.Mutex
	claims, releases int
	released         chan struct{}
}

func (o *owner) Claim(_ context.Context, node string) (func(), error) {
	if node == "node-b" {
		return nil, heldErr{retry: 7 * time.Second}
	}
	if node != "node-a" {
		return nil, errors.New("the API server is out of reach")
	}
	o.mu.Lock()
	o.claims++
	o.mu.Unlock()
	return func() {
		o.mu.Lock()
		o.releases++
		o.mu.Unlock()
		o.released <- struct{}{}
	}, nil
}

// TestOwner: a hub with an Owner serves the nodes it may, refuses another
// replica's with 409 and Retry-After, releases a claim when the session
// ends, and Drop ends a session with a close the host can read.
func TestOwner(t *testing.T) {
	o := &owner{released: make(chan struct{}, 4)}
	h, srv := start(t, hub.Options{Owner: o})

	_, resp, err := dial(t, srv, "node-b", "tok-b", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusConflict || resp.Header.Get("Retry-After") != "7" {
		t.Fatalf("node-b, held elsewhere: err %v, resp %+v", err, resp)
	}
	body, _ := io.ReadAll(resp.Body)
	if want := "served by replica r2"; !strings.Contains(string(body), want) {
		t.Fatalf("refusal body %q lacks %q", body, want)
	}
	if h.Serves("node-b") {
		t.Fatal("the hub serves a refused node")
	}

	c, _, err := dial(t, srv, "node-a", "tok-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitConnected(t, h, "node-a")
	if !h.Serves("node-a") {
		t.Fatal("node-a not served")
	}
	h.Drop("node-a")
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	_, _, err = c.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseTryAgainLater) {
		t.Fatalf("dropped session ended with %v", err)
	}
	select {
	case <-o.released:
	case <-time.After(time.Minute):
		t.Fatal("the claim was not released")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.claims != 1 || o.releases != 1 {
		t.Fatalf("%d claims, %d releases", o.claims, o.releases)
	}
}
