package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
)

// testPKI is two RSA identities, made once: a client and a server.
var testPKI struct {
	sync.Once
	client, server *x509.Certificate
	ckey, skey     *rsa.PrivateKey
}

func identities(t *testing.T) (client, server *x509.Certificate, ckey, skey *rsa.PrivateKey) {
	t.Helper()
	testPKI.Do(func() {
		mk := func(cn string) (*x509.Certificate, *rsa.PrivateKey) {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				t.Fatal(err)
			}
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
			if err != nil {
				t.Fatal(err)
			}
			c, _ := x509.ParseCertificate(der)
			return c, k
		}
		testPKI.client, testPKI.ckey = mk("client")
		testPKI.server, testPKI.skey = mk("server")
	})
	return testPKI.client, testPKI.server, testPKI.ckey, testPKI.skey
}

// channelPair returns the client's channel and its mirror, the server's
// side of the same channel, with a token installed in both. The
// transports carry no connection; chunks go from one to the other by
// hand.
func channelPair(t *testing.T, policy string, mode ua.MessageSecurityMode, chunk uint32) (cli, srv *channel) {
	t.Helper()
	lim := transportLimits{sendChunk: chunk, recvChunk: chunk}
	csec := security{policy: policy, mode: mode}
	ssec := csec
	if mode != ua.MessageSecurityModeNone {
		cc, sc, ck, sk := identities(t)
		csec.localCert, csec.localKey, csec.remoteCert, csec.remoteKey = cc.Raw, ck, sc.Raw, &sk.PublicKey
		ssec.localCert, ssec.localKey, ssec.remoteCert, ssec.remoteKey = sc.Raw, sk, cc.Raw, &ck.PublicKey
	}
	var err error
	if cli, err = newChannel(&transport{lim: lim}, csec); err != nil {
		t.Fatal(err)
	}
	if srv, err = newChannel(&transport{lim: lim}, ssec); err != nil {
		t.Fatal(err)
	}
	cn, sn := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	tok := &ua.ChannelSecurityToken{ChannelID: 7, TokenID: 1, RevisedLifetime: 60000}
	if err := cli.install(&ua.OpenSecureChannelResponse{SecurityToken: tok, ServerNonce: sn}, cn); err != nil {
		t.Fatal(err)
	}
	if err := srv.install(&ua.OpenSecureChannelResponse{SecurityToken: tok, ServerNonce: cn}, sn); err != nil {
		t.Fatal(err)
	}
	return cli, srv
}

// deliver decodes chunks as the receiving side and returns the request
// id and the reassembled body.
func deliver(t *testing.T, to *channel, chunks [][]byte) (uint32, []byte) {
	t.Helper()
	var body []byte
	var id uint32
	for i, ch := range chunks {
		if got := binary.LittleEndian.Uint32(ch[4:]); int(got) != len(ch) {
			t.Fatalf("chunk %d: header says %d bytes, has %d", i, got, len(ch))
		}
		if len(ch) > int(to.t.lim.recvChunk) {
			t.Fatalf("chunk %d of %d bytes exceeds the chunk size %d", i, len(ch), to.t.lim.recvChunk)
		}
		reqID, b, err := to.decodeChunk(string(ch[:4]), ch)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		id = reqID
		body = append(body, b...)
	}
	return id, body
}

var modes = []struct {
	name   string
	policy string
	mode   ua.MessageSecurityMode
}{
	{"None", ua.SecurityPolicyURINone, ua.MessageSecurityModeNone},
	{"Basic256Sha256/Sign", ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSign},
	{"Basic256Sha256/SignAndEncrypt", ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt},
}

func TestChunksRoundTrip(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			cli, srv := channelPair(t, m.policy, m.mode, minBufferSize)
			for _, size := range []int{0, 1, 15, 16, 17, 1000, minBufferSize - 100, minBufferSize, 3*minBufferSize + 7, 200_000} {
				body := make([]byte, size)
				rand.Read(body)
				for _, typ := range []string{"MSG", "OPN"} {
					if typ == "OPN" && size > 1000 {
						continue // OpenSecureChannel is one chunk
					}
					// Client to server, then server to client.
					for dir, pair := range [][2]*channel{{cli, srv}, {srv, cli}} {
						chunks, err := pair[0].encodeMessage(typ, 42, body)
						if err != nil {
							t.Fatalf("%s of %d bytes: %v", typ, size, err)
						}
						if m.mode == ua.MessageSecurityModeSignAndEncrypt && size >= 16 && bytes.Contains(chunks[0], body[:16]) {
							t.Errorf("%s of %d bytes: the body is in the clear", typ, size)
						}
						id, got := deliver(t, pair[1], chunks)
						if id != 42 || !bytes.Equal(got, body) {
							t.Fatalf("%s of %d bytes, direction %d: got request %d and %d bytes back", typ, size, dir, id, len(got))
						}
					}
				}
			}
		})
	}
}

func TestChunkTampered(t *testing.T) {
	for _, m := range modes[1:] {
		t.Run(m.name, func(t *testing.T) {
			cli, srv := channelPair(t, m.policy, m.mode, minBufferSize)
			for _, typ := range []string{"MSG", "OPN"} {
				chunks, err := cli.encodeMessage(typ, 1, []byte("read ns=2;s=Temperature"))
				if err != nil {
					t.Fatal(err)
				}
				ch := chunks[0]
				ch[len(ch)-40] ^= 1
				if _, _, err := srv.decodeChunk(typ+"F", ch); err == nil {
					t.Errorf("%s: a tampered chunk was accepted", typ)
				}
			}
		})
	}
}

func TestChunkReplayed(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			cli, srv := channelPair(t, m.policy, m.mode, minBufferSize)
			chunks, err := cli.encodeMessage("MSG", 1, []byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			replay := bytes.Clone(chunks[0])
			deliver(t, srv, chunks)
			if _, _, err := srv.decodeChunk("MSGF", replay); err == nil || !strings.Contains(err.Error(), "sequence number") {
				t.Errorf("replayed chunk: %v, want a sequence number error", err)
			}
		})
	}
}

func TestOPNChecksCertificates(t *testing.T) {
	cli, srv := channelPair(t, ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt, minBufferSize)
	// The server answers with a certificate other than the one the
	// client opened the channel for.
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "impostor"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &other.PublicKey, other)
	if err != nil {
		t.Fatal(err)
	}
	srv.sec.localCert = der
	chunks, err := srv.encodeMessage("OPN", 1, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cli.decodeChunk("OPNF", chunks[0]); err == nil || !strings.Contains(err.Error(), "another certificate") {
		t.Errorf("OPN from another certificate: %v", err)
	}
}

// pipeServer writes chunks to the client's side of a pipe.
func pipeServer(t *testing.T, lim transportLimits) (*transport, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	tr := newTransport(a)
	tr.lim = lim
	return tr, b
}

func TestReceiveReassemblesAndAborts(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { testReassembly(t, m.policy, m.mode, minBufferSize) })
		// Chunks larger than the reader's first buffer make it grow.
		t.Run(m.name+"/64KiB", func(t *testing.T) { testReassembly(t, m.policy, m.mode, ourBufferSize) })
	}
}

func testReassembly(t *testing.T, policy string, mode ua.MessageSecurityMode, chunk uint32) {
	cli, srv := channelPair(t, policy, mode, chunk)
	tr, peer := pipeServer(t, cli.t.lim)
	cli.t = tr
	big := bytes.Repeat([]byte("opc"), 60_000)
	first, err := srv.encodeMessage("MSG", 5, big)
	if err != nil {
		t.Fatal(err)
	}
	// An aborted message: an intermediate chunk, then an abort with a
	// status and a reason.
	partial, err := srv.encodeMessage("MSG", 6, bytes.Repeat([]byte{9}, int(chunk)+1000))
	if err != nil || len(partial) != 2 || partial[0][3] != 'C' {
		t.Fatalf("%d chunks, %v", len(partial), err)
	}
	srv.seq-- // the final chunk is not sent
	abortBody := binary.LittleEndian.AppendUint32(nil, uint32(ua.StatusBadResponseTooLarge))
	abortBody = appendString(abortBody, "too big")
	abort, err := encodeAbort(srv, 6, abortBody)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for _, ch := range append(append(first, partial[0]), abort...) {
			if _, err := peer.Write(ch); err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	msg, err := cli.receive(deadline)
	if err != nil || msg.reqID != 5 || !bytes.Equal(msg.body, big) {
		t.Fatalf("first message: request %d, %d bytes, %v", msg.reqID, len(msg.body), err)
	}
	msg, err = cli.receive(deadline)
	if err != nil || msg.reqID != 6 || msg.abort == nil || !strings.Contains(msg.abort.Error(), "too big") {
		t.Fatalf("aborted message: request %d, abort %v, %v", msg.reqID, msg.abort, err)
	}
	if len(cli.partial) != 0 {
		t.Errorf("%d partial messages left after the abort", len(cli.partial))
	}
	if len(tr.buf) > ourBufferSize {
		t.Errorf("the read buffer grew to %d bytes", len(tr.buf))
	}
}

// encodeAbort secures an abort chunk (type MSGA).
func encodeAbort(c *channel, reqID uint32, body []byte) ([][]byte, error) {
	secHdr := binary.LittleEndian.AppendUint32(nil, c.token)
	ch, err := c.encodeChunk("MSG", 'A', secHdr, reqID, body, false)
	return [][]byte{ch}, err
}

func TestReceiveKeepsPartialChunkAcrossTimeouts(t *testing.T) {
	cli, srv := channelPair(t, ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt, minBufferSize)
	tr, peer := pipeServer(t, cli.t.lim)
	cli.t = tr
	chunks, err := srv.encodeMessage("MSG", 3, []byte("publish response"))
	if err != nil {
		t.Fatal(err)
	}
	ch := chunks[0]
	go peer.Write(ch[:10])
	if _, err := cli.receive(time.Now().Add(50 * time.Millisecond)); !isTimeout(err) {
		t.Fatalf("receive with 10 bytes of a chunk: %v, want a timeout", err)
	}
	go peer.Write(ch[10:])
	msg, err := cli.receive(time.Now().Add(5 * time.Second))
	if err != nil || msg.reqID != 3 || string(msg.body) != "publish response" {
		t.Fatalf("after the rest came: %+v, %v", msg, err)
	}
}

func TestTokenRenewalKeepsOldToken(t *testing.T) {
	cli, srv := channelPair(t, ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt, minBufferSize)
	// The server sends with token 1 while the client already renewed to 2.
	old, err := srv.encodeMessage("MSG", 8, []byte("late"))
	if err != nil {
		t.Fatal(err)
	}
	cn, sn := bytes.Repeat([]byte{3}, 32), bytes.Repeat([]byte{4}, 32)
	tok := &ua.ChannelSecurityToken{ChannelID: 7, TokenID: 2, RevisedLifetime: 60000}
	if err := cli.install(&ua.OpenSecureChannelResponse{SecurityToken: tok, ServerNonce: sn}, cn); err != nil {
		t.Fatal(err)
	}
	if _, body := deliver(t, cli, old); string(body) != "late" {
		t.Fatalf("message with the old token: %q", body)
	}
	if err := srv.install(&ua.OpenSecureChannelResponse{SecurityToken: tok, ServerNonce: cn}, sn); err != nil {
		t.Fatal(err)
	}
	next, err := srv.encodeMessage("MSG", 9, []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	if _, body := deliver(t, cli, next); string(body) != "new" {
		t.Fatalf("message with the new token: %q", body)
	}
	// A third token retires the first.
	tok3 := &ua.ChannelSecurityToken{ChannelID: 7, TokenID: 3, RevisedLifetime: 60000}
	if err := cli.install(&ua.OpenSecureChannelResponse{SecurityToken: tok3, ServerNonce: sn}, cn); err != nil {
		t.Fatal(err)
	}
	if cli.recv[1] != nil || cli.recv[2] == nil || cli.recv[3] == nil {
		t.Errorf("tokens kept after two renewals: %v", cli.recv)
	}
}

func TestInstallChecksNonce(t *testing.T) {
	cli, _ := channelPair(t, ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSign, minBufferSize)
	tok := &ua.ChannelSecurityToken{ChannelID: 7, TokenID: 2, RevisedLifetime: 60000}
	if err := cli.install(&ua.OpenSecureChannelResponse{SecurityToken: tok, ServerNonce: []byte{1, 2, 3}}, make([]byte, 32)); err == nil {
		t.Error("a 3-byte server nonce was accepted")
	}
	tok.ChannelID = 8
	if err := cli.install(&ua.OpenSecureChannelResponse{SecurityToken: tok, ServerNonce: make([]byte, 32)}, make([]byte, 32)); err == nil {
		t.Error("a token for another channel was accepted")
	}
}
