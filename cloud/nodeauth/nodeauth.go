// Package nodeauth holds the node credentials wapper-cloud accepts: one
// bearer token per node, in a Kubernetes Secret labelled with the node's
// name. A token authenticates only the node its Secret names.
//
//	apiVersion: v1
//	kind: Secret
//	metadata:
//	  name: wapper-node-edge-1
//	  namespace: wapper-system
//	  labels: {wapper.dev/node: edge-1}
//	data: {token: <base64>}
package nodeauth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

const (
	// NodeLabel names the node a token Secret belongs to.
	NodeLabel = "wapper.dev/node"
	// TokenKey is the Secret data key that holds the token.
	TokenKey = "token"
	// SecretPrefix starts the name of each token Secret.
	SecretPrefix = "wapper-node-"
)

// Store is an Authenticator backed by an informer on the token Secrets.
type Store struct {
	inf     informers.SharedInformerFactory
	secrets cache.SharedIndexInformer
	log     *slog.Logger
}

// New returns a Store over the token Secrets in namespace.
func New(cs kubernetes.Interface, namespace string, log *slog.Logger) *Store {
	if log == nil {
		log = slog.Default()
	}
	inf := informers.NewSharedInformerFactoryWithOptions(cs, 10*time.Minute,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = NodeLabel }))
	s := &Store{inf: inf, secrets: inf.Core().V1().Secrets().Informer(), log: log}
	_ = s.secrets.AddIndexers(cache.Indexers{"node": func(obj any) ([]string, error) {
		return []string{obj.(*corev1.Secret).Labels[NodeLabel]}, nil
	}})
	return s
}

// Run runs the informer on the token Secrets until ctx ends, and returns
// once it has stopped. It returns nil: the informer retries failed lists
// and watches itself.
func (s *Store) Run(ctx context.Context) error {
	s.inf.Start(ctx.Done())
	<-ctx.Done()
	s.inf.Shutdown()
	return nil
}

// WaitSynced waits until Run's informer has listed the token Secrets, so
// that Authenticate knows every node; it fails when ctx ends first.
func (s *Store) WaitSynced(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), s.secrets.HasSynced) {
		return fmt.Errorf("nodeauth: token Secrets did not sync: %w", ctx.Err())
	}
	return nil
}

// Authenticate reports whether token is a token of node.
func (s *Store) Authenticate(node, token string) bool {
	if node == "" || token == "" {
		return false
	}
	objs, err := s.secrets.GetIndexer().ByIndex("node", node)
	if err != nil {
		return false
	}
	for _, o := range objs {
		want := o.(*corev1.Secret).Data[TokenKey]
		if len(want) > 0 && subtle.ConstantTimeCompare(want, []byte(token)) == 1 {
			return true
		}
	}
	return false
}

// NewToken returns a random token.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Ensure returns node's token, creating its Secret with a new token when
// there is none.
func Ensure(ctx context.Context, cs kubernetes.Interface, namespace, node string) (string, error) {
	api := cs.CoreV1().Secrets(namespace)
	name := SecretPrefix + node
	if s, err := api.Get(ctx, name, metav1.GetOptions{}); err == nil && len(s.Data[TokenKey]) > 0 {
		return string(s.Data[TokenKey]), nil
	} else if err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("read Secret %s/%s: %w", namespace, name, err)
	}
	tok, err := NewToken()
	if err != nil {
		return "", err
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{NodeLabel: node}},
		Data:       map[string][]byte{TokenKey: []byte(tok)},
	}
	if _, err := api.Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("create Secret %s/%s (does namespace %s exist?): %w", namespace, name, namespace, err)
	}
	return tok, nil
}
