package console

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
)

// Errors of an Authorizer.
var (
	// ErrUnauthenticated: no token, or one the cluster does not accept.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: the token's user may not read the fleet.
	ErrForbidden = errors.New("forbidden")
)

// Authorizer decides who may read the fleet.
type Authorizer interface {
	// Authorize returns the user a bearer token belongs to, or an error
	// wrapping ErrUnauthenticated or ErrForbidden (with the reason), or
	// another error when it could not tell.
	Authorize(ctx context.Context, token string) (user string, err error)
}

// Cluster authorizes as the API server does: the token goes through a
// TokenReview, and its user must be allowed to list MapperPlugins (a
// SubjectAccessReview), the read that the fleet view amounts to.
// Answers are cached for a short while per token.
type Cluster struct {
	client kubernetes.Interface

	mu    sync.Mutex
	cache map[[32]byte]answer
}

type answer struct {
	user    string
	err     error
	expires time.Time
}

// Cache lifetimes and bound of Cluster.
const (
	allowedFor = 30 * time.Second
	deniedFor  = 5 * time.Second
	maxCached  = 1024
)

// NewCluster returns a Cluster that asks the API server through client.
func NewCluster(client kubernetes.Interface) *Cluster {
	return &Cluster{client: client, cache: map[[32]byte]answer{}}
}

// Authorize implements Authorizer.
func (c *Cluster) Authorize(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", fmt.Errorf("%w: send a Kubernetes bearer token (for example `kubectl create token NAME`)", ErrUnauthenticated)
	}
	key := sha256.Sum256([]byte(token))
	now := time.Now()
	c.mu.Lock()
	a, ok := c.cache[key]
	c.mu.Unlock()
	if ok && now.Before(a.expires) {
		return a.user, a.err
	}
	user, err := c.review(ctx, token)
	if err != nil && !errors.Is(err, ErrUnauthenticated) && !errors.Is(err, ErrForbidden) {
		return "", err // the API server could not answer: ask again next time
	}
	ttl := allowedFor
	if err != nil {
		ttl = deniedFor
	}
	c.mu.Lock()
	if len(c.cache) >= maxCached {
		for k, old := range c.cache {
			if !now.Before(old.expires) || len(c.cache) >= maxCached {
				delete(c.cache, k)
			}
		}
	}
	c.cache[key] = answer{user: user, err: err, expires: now.Add(ttl)}
	c.mu.Unlock()
	return user, err
}

func (c *Cluster) review(ctx context.Context, token string) (string, error) {
	tr, err := c.client.AuthenticationV1().TokenReviews().Create(ctx,
		&authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token review: %w", err)
	}
	if !tr.Status.Authenticated {
		why := tr.Status.Error
		if why == "" {
			why = "the cluster does not accept this token"
		}
		return "", fmt.Errorf("%w: %s", ErrUnauthenticated, why)
	}
	u := tr.Status.User
	extra := make(map[string]authorizationv1.ExtraValue, len(u.Extra))
	for k, v := range u.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	gvr := mappersv1alpha1.GroupVersionResource
	sar, err := c.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User: u.Username, Groups: u.Groups, UID: u.UID, Extra: extra,
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "list", Group: gvr.Group, Resource: gvr.Resource},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("subject access review: %w", err)
	}
	if !sar.Status.Allowed {
		return u.Username, fmt.Errorf("%w: %s may not list %s.%s, which the fleet console needs", ErrForbidden, u.Username, gvr.Resource, gvr.Group)
	}
	return u.Username, nil
}
