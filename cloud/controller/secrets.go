package controller

import (
	"encoding/json"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"wapper.dev/wapper/abi/grant"
	mappersv1alpha1 "wapper.dev/wapper/apis/mappers/v1alpha1"
	"wapper.dev/wapper/linkproto"
)

// Secrets for plugins: the Secrets of Options.SecretsNamespace that a
// delivered MapperPlugin's grants.secrets match, or that its grants.tls
// entries name, go to the nodes that run the plugin and to no other.

// initSecrets starts watching the Secrets of Options.SecretsNamespace; a
// change of one reconciles every connected node.
func (c *Controller) initSecrets() error {
	if c.opts.Kube == nil || c.opts.SecretsNamespace == "" {
		return nil
	}
	c.secretInf = informers.NewSharedInformerFactoryWithOptions(c.opts.Kube, c.opts.Resync, informers.WithNamespace(c.opts.SecretsNamespace))
	c.secrets = c.secretInf.Core().V1().Secrets().Informer()
	_, err := c.secrets.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.EnqueueConnected() },
		UpdateFunc: func(old, cur any) {
			if o, ok := old.(*corev1.Secret); ok && o.ResourceVersion == cur.(*corev1.Secret).ResourceVersion {
				return // a resync
			}
			c.EnqueueConnected()
		},
		DeleteFunc: func(any) { c.EnqueueConnected() },
	})
	return err
}

// addSecrets adds to out the Secrets plugin p is granted. A Secret named
// by grants.tls that does not exist is left out: the host then says which
// one it misses when a connection needs it.
func (c *Controller) addSecrets(out map[string]linkproto.Item, p *mappersv1alpha1.MapperPlugin) error {
	g := p.Spec.Grants
	if len(g.Secrets) == 0 && len(g.TLS) == 0 {
		return nil
	}
	if c.secrets == nil {
		c.log.Warn("controller: a MapperPlugin is granted secrets, but wapper-cloud delivers none (no --plugin-secrets-namespace)", "plugin", p.Name)
		return nil
	}
	var names []string
	for _, o := range c.secrets.GetIndexer().List() {
		s := o.(*corev1.Secret)
		for _, pat := range g.Secrets {
			if grant.MatchGlob(pat, s.Name) {
				names = append(names, s.Name)
				break
			}
		}
	}
	for _, t := range g.TLS {
		names = append(names, t.CASecret, t.ClientSecret)
	}
	sort.Strings(names)
	for _, name := range names {
		key := linkproto.Key(linkproto.KindSecret, c.opts.SecretsNamespace, name)
		if _, done := out[key]; done || name == "" {
			continue
		}
		o, ok, err := c.secrets.GetIndexer().GetByKey(c.opts.SecretsNamespace + "/" + name)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		s := o.(*corev1.Secret)
		b, err := json.Marshal(linkproto.SecretObject{Name: s.Name, Data: s.Data})
		if err != nil {
			return fmt.Errorf("controller: encode %s", key) // never the data
		}
		// The version is the resource version: a hash of the data would
		// let anyone who sees the link's inventory test guesses.
		out[key] = linkproto.Item{Key: key, Version: "rv:" + s.ResourceVersion, Object: b}
	}
	return nil
}
