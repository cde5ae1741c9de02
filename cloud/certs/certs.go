// Package certs gives wapper-cloud its serving certificate: the operator's
// own, or a self-signed one generated once and kept in a Kubernetes Secret
// so that every replica, and every restart, serves the same certificate
// and hosts can trust it with --ca-file.
package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// SelfSigned makes a self-signed ECDSA certificate for hosts (DNS names or
// IP addresses), valid for ten years, returned as PEM.
func SelfSigned(hosts []string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "wapper-cloud"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// FromSecret returns the certificate kept in Secret namespace/name,
// generating a self-signed one for hosts and storing it there first when
// the Secret does not exist. Concurrent replicas agree on one certificate:
// the loser of the create race reads the winner's.
func FromSecret(ctx context.Context, cs kubernetes.Interface, namespace, name string, hosts []string) (tls.Certificate, []byte, error) {
	api := cs.CoreV1().Secrets(namespace)
	for range 3 {
		s, err := api.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			c, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
			if err != nil {
				return tls.Certificate{}, nil, fmt.Errorf("Secret %s/%s holds no usable certificate (delete it to have a new one generated): %w", namespace, name, err)
			}
			return c, s.Data[corev1.TLSCertKey], nil
		}
		if !apierrors.IsNotFound(err) {
			return tls.Certificate{}, nil, fmt.Errorf("read TLS Secret %s/%s: %w", namespace, name, err)
		}
		cert, key, err := SelfSigned(hosts)
		if err != nil {
			return tls.Certificate{}, nil, err
		}
		_, err = api.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: cert, corev1.TLSPrivateKeyKey: key},
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return tls.Certificate{}, nil, fmt.Errorf("store the generated certificate in Secret %s/%s (does namespace %s exist?): %w", namespace, name, namespace, err)
		}
	}
	return tls.Certificate{}, nil, fmt.Errorf("TLS Secret %s/%s: gave up after repeated create races", namespace, name)
}
