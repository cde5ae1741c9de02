package cloudlink_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"wapper.dev/wapper/cloud/server"
)

// TestSecretsStayInMemory: the Secrets a node's plugin is granted reach
// its link, which keeps them in memory only: their values are nowhere in
// the host's database file. A restarted host gets them again from the
// cloud; a rotated one replaces the old value, and a deleted one goes.
func TestSecretsStayInMemory(t *testing.T) {
	c := newCluster(t)
	secretNS := c.env.Namespace(t)
	cl := c.startCloud(t, "", func(cfg *server.Config) { cfg.PluginSecretsNamespace = secretNS })
	value := make([]byte, 16)
	rand.Read(value)
	password := "pw-" + hex.EncodeToString(value)
	secrets := c.kc.CoreV1().Secrets(secretNS)
	if _, err := secrets.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "plc-login"}, Data: map[string][]byte{"password": []byte(password)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	granted := plugin + "\n  grants: {secrets: [plc-*]}"
	c.apply(t, names(t, c, granted+"\n---\n"+model+"\n---\n"+device("a1", c.node("a"), "20")))
	tok := c.token(t, c.node("a"))
	dbPath := filepath.Join(t.TempDir(), "a.db")
	secretIs := func(h *host, want string) func() (bool, error) {
		return func() (bool, error) {
			v, held := h.link.Secret("plc-login", "password")
			return held == (want != "") && string(v) == want, nil
		}
	}

	a := startHost(t, cl.url, c.node("a"), tok, cl.ca, dbPath, nil)
	waitUntil(t, "the secret", secretIs(a, password))
	if _, held := a.link.Secret("plc-login", "user"); !held {
		t.Error("a held secret without the key is not held")
	}
	a.stop()
	db, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(db, []byte(password)) {
		t.Fatal("the secret's value is in the host's database")
	}

	// Restarted, the host has it again only from the cloud.
	a = startHost(t, cl.url, c.node("a"), tok, cl.ca, dbPath, nil)
	waitUntil(t, "the secret after a restart", secretIs(a, password))

	s, err := secrets.Get(context.Background(), "plc-login", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data["password"] = []byte("rotated")
	if _, err := secrets.Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the rotated secret", secretIs(a, "rotated"))
	if err := secrets.Delete(context.Background(), "plc-login", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the secret withdrawn", secretIs(a, ""))
}
