package rest

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMountedRoutes: routes added with Handle are behind the token like
// the API's; those added with HandleOpen read without it, write with it;
// the API's own routes and its 404 stay as they were.
func TestMountedRoutes(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	s := New(nil, Options{Token: "s3cret", AuthReads: true, Gatherer: prometheus.NewRegistry()})
	s.HandleOpen("/{$}", ok)
	s.HandleOpen("/console/", ok)
	s.Handle("/console/api/", ok)
	checkAuth(t, s.Handler(), []authCase{
		{"GET", "/", "", "", 200},
		{"GET", "/console/console.js", "", "", 200},
		{"HEAD", "/console/console.css", "", "", 200},
		{"POST", "/console/console.js", "", "", 401},
		{"POST", "/console/console.js", "", "Bearer s3cret", 200},
		{"GET", "/console/api/plugins", "", "", 401},
		{"GET", "/console/api/events", "", "Bearer wrong", 401},
		{"GET", "/console/api/events", "", "Bearer s3cret", 200},
		{"GET", "/api/v1/devices", "", "", 401},
		{"GET", "/api/v1/ping", "", "", 200},
		{"GET", "/nosuch", "", "", 401},
		{"GET", "/nosuch", "", "Bearer s3cret", 404},
	})

	// Without AuthReads every read is open, writes need the token.
	s = New(nil, Options{Token: "s3cret", Gatherer: prometheus.NewRegistry()})
	s.HandleOpen("/{$}", ok)
	s.Handle("/console/api/", ok)
	checkAuth(t, s.Handler(), []authCase{
		{"GET", "/", "", "", 200},
		{"GET", "/console/api/plugins", "", "", 200},
		{"PUT", "/console/api/plugins", "", "", 401},
		{"GET", "/nosuch", "", "", 404},
	})
}
