package rest

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
)

// pingPath stays open with Options.AuthReads, for health checks.
const pingPath = "/api/v1/ping"

// isRead reports whether a method only reads. Every other method is a
// write and needs the token when one is set.
func isRead(method string) bool { return method == http.MethodGet || method == http.MethodHead }

// guard asks for the token before mux sees the request: on every write,
// and on every read but ping and the routes of HandleOpen with
// Options.AuthReads.
func (s *Server) guard(next http.Handler) http.Handler {
	if s.opts.Token == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isRead(r.Method) || (s.opts.AuthReads && !s.openRead(r)) {
			if !s.authorized(w, r) {
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// openRead reports whether r reads a route that needs no token with
// Options.AuthReads: ping, or a route of HandleOpen.
func (s *Server) openRead(r *http.Request) bool {
	if r.URL.Path == pingPath {
		return true
	}
	if len(s.open) == 0 {
		return false
	}
	_, pattern := s.mux.Handler(r)
	return s.open[pattern]
}

// writes wraps a route that writes whatever its method (mapper-framework's
// GET /api/v1/devicemethod/.../{data} sets a value).
func (s *Server) writes(h http.HandlerFunc) http.HandlerFunc {
	if s.opts.Token == "" {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if s.authorized(w, r) {
			h(w, r)
		}
	}
}

// authorized checks the bearer token, answering 401 when it is missing or
// wrong.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	got, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="wapper-host"`)
		s.fail(w, http.StatusUnauthorized, errors.New(`this route needs "Authorization: Bearer TOKEN" with the token of wapper-host --http-token-file`))
		return false
	}
	// Compare digests, so that neither the content nor the length of the
	// token shows in the time taken.
	want := sha256.Sum256([]byte(s.opts.Token))
	have := sha256.Sum256([]byte(got))
	if subtle.ConstantTimeCompare(want[:], have[:]) != 1 {
		s.log.Warn("REST request with a wrong bearer token refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="wapper-host", error="invalid_token"`)
		s.fail(w, http.StatusUnauthorized, errors.New("wrong bearer token; send the token of wapper-host --http-token-file"))
		return false
	}
	return true
}

// bearer returns the token of an "Authorization: Bearer TOKEN" header.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
