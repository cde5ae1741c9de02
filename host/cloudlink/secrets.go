package cloudlink

import (
	"encoding/json"
	"fmt"
	"sync"

	"wapper.dev/wapper/linkproto"
)

// secrets are the Secrets the cloud has sent, in memory only: they never
// reach the store, so a restarted host has none until the cloud sends
// them again (it does on connect, since they are not in the inventory).
type secrets struct {
	mu sync.RWMutex
	m  map[string]secret // by key (Secret/namespace/name)
}

type secret struct {
	version string
	obj     linkproto.SecretObject
}

// split takes the Secret items out of items, applies them, and returns
// the others.
func (s *secrets) split(items []linkproto.Item) ([]linkproto.Item, error) {
	rest := items[:0:0]
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range items {
		if kind, _, _ := linkproto.SplitKey(it.Key); kind != linkproto.KindSecret {
			rest = append(rest, it)
			continue
		}
		if it.Deleted() {
			delete(s.m, it.Key)
			continue
		}
		var obj linkproto.SecretObject
		if err := json.Unmarshal(it.Object, &obj); err != nil {
			// The error names the key only: a decoder's message could
			// quote the data.
			return nil, fmt.Errorf("cloudlink: %s is not a Secret object", it.Key)
		}
		if s.m == nil {
			s.m = map[string]secret{}
		}
		s.m[it.Key] = secret{version: it.Version, obj: obj}
	}
	return rest, nil
}

// addInventory adds the held Secrets' versions to inv.
func (s *secrets) addInventory(inv map[string]string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for k, v := range s.m {
		inv[k] = v.version
	}
}

// Secret returns a copy of key key of the Secret called name that the
// cloud sent, and whether the Secret is held; a held Secret without the
// key gives nil and true.
func (l *Link) Secret(name, key string) ([]byte, bool) {
	l.secrets.mu.RLock()
	defer l.secrets.mu.RUnlock()
	for _, s := range l.secrets.m {
		if s.obj.Name == name {
			v, ok := s.obj.Data[key]
			if !ok {
				return nil, true
			}
			return append([]byte{}, v...), true // not nil when empty
		}
	}
	return nil, false
}
