// Package auth checks the credentials that the embedded registry accepts
// for pushes (and for reads, unless anonymous reads are on).
//
// Credentials come from a fixed user and password, from an htpasswd file
// with bcrypt hashes (the format `htpasswd -B` writes and Docker's
// registry reads), or both.
package auth

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Checker decides whether a user and password are valid.
type Checker interface {
	Check(user, password string) bool
}

// Static accepts exactly one user and password.
type Static struct {
	User, Password string
}

// Check implements Checker in constant time over the password.
func (s Static) Check(user, password string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(s.User))
	p := subtle.ConstantTimeCompare([]byte(password), []byte(s.Password))
	return s.User != "" && u&p == 1
}

// Htpasswd holds users and bcrypt hashes read from an htpasswd file.
type Htpasswd map[string][]byte

// LoadHtpasswd reads an htpasswd file: one `user:hash` a line, hashes in
// bcrypt ($2a$, $2b$ or $2y$); blank lines and lines starting with # are
// ignored.
func LoadHtpasswd(path string) (Htpasswd, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read htpasswd file: %w", err)
	}
	h := Htpasswd{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" || !strings.HasPrefix(hash, "$2") {
			return nil, fmt.Errorf("%s:%d: want user:bcrypt-hash (create lines with `wapper registry passwd USER` or `htpasswd -nB USER`)", path, n)
		}
		h[user] = []byte(hash)
	}
	return h, sc.Err()
}

// Check implements Checker.
func (h Htpasswd) Check(user, password string) bool {
	hash, ok := h[user]
	if !ok {
		// Spend the same time as a wrong password, so that user names do
		// not leak through timing.
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("wapper"), bcrypt.DefaultCost)

// Line returns an htpasswd line for user with a bcrypt hash of password.
func Line(user, password string) (string, error) {
	if user == "" || strings.Contains(user, ":") {
		return "", fmt.Errorf("user name must be non-empty and contain no colon")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", err
	}
	return user + ":" + string(h), nil
}

// Any accepts a credential that any of its checkers accepts.
type Any []Checker

// Check implements Checker.
func (a Any) Check(user, password string) bool {
	for _, c := range a {
		if c.Check(user, password) {
			return true
		}
	}
	return false
}
