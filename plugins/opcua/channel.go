package main

// OPC UA Secure Conversation (OPC 10000-6 §6.7): the chunks of the
// OpenSecureChannel exchange (asymmetric: RSA with the application
// certificates) and of every later message (symmetric: keys derived from
// the two nonces), signed and encrypted as the security mode says, with
// the algorithms of gopcua's uapolicy package. This file only frames,
// secures and reassembles; it never waits on its own, so that the client
// above decides what to do with each message that arrives (see client.go).

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"

	wapper "wapper.dev/wapper/sdk-go"
)

// security is what a channel is secured with.
type security struct {
	policy string // a SecurityPolicy URI
	mode   ua.MessageSecurityMode
	// The client's application instance certificate (DER) and key, and
	// the server's certificate (DER, its leaf) and public key; unset for
	// mode None.
	localCert  []byte
	localKey   *rsa.PrivateKey
	remoteCert []byte
	remoteKey  *rsa.PublicKey
}

func (s *security) none() bool { return s.mode == ua.MessageSecurityModeNone }

// message is a whole message from the server: its type ("MSG", "OPN" or
// "CLO"), the request it answers, and its body (a service's type id and
// encoding). abort is set when the server aborted the message.
type message struct {
	typ   string
	reqID uint32
	body  []byte
	abort error
}

// channel is one secure channel over a transport.
type channel struct {
	t   *transport
	sec security
	// asym secures OpenSecureChannel messages (nil for mode None).
	asym *uapolicy.EncryptionAlgorithm

	id    uint32 // the secure channel id the server gave
	token uint32 // the token messages are sent with
	send  *uapolicy.EncryptionAlgorithm
	// recv keeps the algorithms of the current and the previous token:
	// after a renewal the server may still send with the old one.
	recv     map[uint32]*uapolicy.EncryptionAlgorithm
	oldToken uint32

	seq       uint32 // last sequence number sent
	peerSeq   uint32 // last sequence number received
	havePeer  bool
	nextReq   uint32
	renewAt   time.Time
	expiresAt time.Time

	// partial holds the bodies of messages whose final chunk has not
	// come yet, by request id.
	partial map[uint32][]byte
}

func newChannel(t *transport, sec security) (*channel, error) {
	c := &channel{t: t, sec: sec, recv: map[uint32]*uapolicy.EncryptionAlgorithm{}, partial: map[uint32][]byte{}}
	if !sec.none() {
		a, err := uapolicy.Asymmetric(sec.policy, sec.localKey, sec.remoteKey)
		if err != nil {
			return nil, wapper.Errorf(wapper.ErrInvalid, "security policy %s: %v", policyName(sec.policy), err)
		}
		c.asym = a
	}
	return c, nil
}

func (c *channel) requestID() uint32 {
	c.nextReq++
	if c.nextReq == 0 {
		c.nextReq = 1
	}
	return c.nextReq
}

func (c *channel) nextSeq() uint32 {
	c.seq++
	// Sequence numbers wrap to a value below 1024 before 2^32 - 1024.
	if c.seq > math.MaxUint32-1024 {
		c.seq = 1
	}
	return c.seq
}

// asymHeader encodes the asymmetric security header of an OPN chunk.
func (c *channel) asymHeader() []byte {
	var b []byte
	b = appendString(b, c.sec.policy)
	if c.sec.none() {
		b = appendBytes(b, nil)
		return appendBytes(b, nil)
	}
	b = appendBytes(b, c.sec.localCert)
	sum := sha1.Sum(c.sec.remoteCert)
	return appendBytes(b, sum[:])
}

// encodeMessage splits a message body into chunks and secures each. typ
// is "OPN", "MSG" or "CLO".
func (c *channel) encodeMessage(typ string, reqID uint32, body []byte) ([][]byte, error) {
	asym := typ == "OPN"
	var secHdr []byte
	if asym {
		secHdr = c.asymHeader()
	} else {
		secHdr = binary.LittleEndian.AppendUint32(nil, c.token)
	}
	hdr := 12 + len(secHdr)
	maxBody := c.maxBody(hdr, asym)
	if maxBody <= 0 {
		return nil, wapper.Errorf(wapper.ErrInternal, "chunk size %d leaves no room for a body", c.t.lim.sendChunk)
	}
	if lim := c.t.lim.maxMessage; lim != 0 && len(body) > int(lim) {
		return nil, wapper.Errorf(wapper.ErrTooLarge, "request of %d bytes exceeds the server's message size limit %d", len(body), lim)
	}
	n := (len(body) + maxBody - 1) / maxBody
	if n == 0 {
		n = 1
	}
	if asym && n > 1 {
		return nil, wapper.Errorf(wapper.ErrTooLarge, "OpenSecureChannel request of %d bytes does not fit one chunk", len(body))
	}
	if lim := c.t.lim.maxChunks; lim != 0 && n > int(lim) {
		return nil, wapper.Errorf(wapper.ErrTooLarge, "request of %d bytes needs %d chunks, the server takes %d", len(body), n, lim)
	}
	chunks := make([][]byte, 0, n)
	for i := range n {
		part := body[i*maxBody : min(len(body), (i+1)*maxBody)]
		flag := byte('C')
		if i == n-1 {
			flag = 'F'
		}
		ch, err := c.encodeChunk(typ, flag, secHdr, reqID, part, asym)
		if err != nil {
			return nil, err
		}
		chunks = append(chunks, ch)
	}
	return chunks, nil
}

// maxBody is the largest body one chunk carries, after the headers, the
// padding and the signature.
func (c *channel) maxBody(hdr int, asym bool) int {
	size := int(c.t.lim.sendChunk)
	if size == 0 {
		size = minBufferSize
	}
	if c.sec.none() {
		return size - hdr - 8
	}
	algo := c.send
	if asym {
		algo = c.asym
	}
	if asym || c.sec.mode == ua.MessageSecurityModeSignAndEncrypt {
		pad := 1
		if algo.RemoteSignatureLength() > 256 {
			pad = 2
		}
		blocks := (size - hdr) / algo.BlockSize()
		return blocks*algo.PlaintextBlockSize() - 8 - algo.SignatureLength() - pad
	}
	return size - hdr - 8 - algo.SignatureLength()
}

// encodeChunk builds one chunk: header, security header, sequence header,
// body; then pads, signs and encrypts it as the mode says.
func (c *channel) encodeChunk(typ string, flag byte, secHdr []byte, reqID uint32, body []byte, asym bool) ([]byte, error) {
	b := make([]byte, 0, 12+len(secHdr)+8+len(body)+600)
	b = append(b, typ...)
	b = append(b, flag, 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, c.id)
	b = append(b, secHdr...)
	hdr := len(b)
	b = binary.LittleEndian.AppendUint32(b, c.nextSeq())
	b = binary.LittleEndian.AppendUint32(b, reqID)
	b = append(b, body...)
	if c.sec.none() {
		binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
		return b, nil
	}
	algo := c.send
	if asym {
		algo = c.asym
	}
	encrypt := asym || c.sec.mode == ua.MessageSecurityModeSignAndEncrypt
	var size int
	if encrypt {
		ptbs := algo.PlaintextBlockSize()
		extra := algo.RemoteSignatureLength() > 256
		padBytes := 1
		if extra {
			padBytes = 2
		}
		pad := ptbs - (len(b)-hdr+algo.SignatureLength()+padBytes)%ptbs
		if pad == ptbs {
			pad = 0
		}
		for range pad + 1 {
			b = append(b, byte(pad))
		}
		if extra {
			b = append(b, byte(pad>>8))
		}
		size = hdr + (len(b)-hdr+algo.SignatureLength())/ptbs*algo.BlockSize()
	} else {
		size = len(b) + algo.SignatureLength()
	}
	binary.LittleEndian.PutUint32(b[4:], uint32(size))
	sig, err := algo.Signature(b)
	if err != nil {
		return nil, wapper.Errorf(wapper.ErrInternal, "sign %s chunk: %v", typ, err)
	}
	b = append(b, sig...)
	if encrypt {
		enc, err := algo.Encrypt(b[hdr:])
		if err != nil {
			return nil, wapper.Errorf(wapper.ErrInternal, "encrypt %s chunk: %v", typ, err)
		}
		b = append(b[:hdr], enc...)
	}
	if len(b) != size {
		return nil, wapper.Errorf(wapper.ErrInternal, "%s chunk is %d bytes, its header says %d", typ, len(b), size)
	}
	return b, nil
}

// sendMessage secures and writes a message.
func (c *channel) sendMessage(typ string, reqID uint32, body []byte, deadline time.Time) error {
	chunks, err := c.encodeMessage(typ, reqID, body)
	if err != nil {
		return err
	}
	for _, ch := range chunks {
		if err := c.t.write(ch, deadline); err != nil {
			return err
		}
	}
	return nil
}

// receive reads chunks until a message is whole and returns it. A chunk
// that fails its checks is an error: the channel cannot go on.
func (c *channel) receive(deadline time.Time) (message, error) {
	for {
		typ, chunk, err := c.t.readChunk(deadline)
		if err != nil {
			return message{}, err
		}
		switch typ[:3] {
		case "ERR":
			return message{}, wapper.Errorf(wapper.ErrUnavailable, "server closed the channel: %v", parseError(chunk[hdrLen:]))
		case "MSG", "OPN", "CLO":
		default:
			return message{}, wapper.Errorf(wapper.ErrIO, "unexpected message type %q from the server", typ)
		}
		reqID, body, err := c.decodeChunk(typ, chunk)
		if err != nil {
			return message{}, err
		}
		switch typ[3] {
		case 'C':
			if len(c.partial[reqID])+len(body) > maxMessageSize {
				return message{}, wapper.Errorf(wapper.ErrTooLarge, "response to request %d exceeds %d bytes", reqID, maxMessageSize)
			}
			c.partial[reqID] = append(c.partial[reqID], body...)
		case 'F':
			if p, ok := c.partial[reqID]; ok {
				delete(c.partial, reqID)
				body = append(p, body...)
			} else {
				// The chunk's bytes are reused by the next read.
				body = bytes.Clone(body)
			}
			return message{typ: typ[:3], reqID: reqID, body: body}, nil
		case 'A':
			delete(c.partial, reqID)
			return message{typ: typ[:3], reqID: reqID, abort: parseError(body)}, nil
		default:
			return message{}, wapper.Errorf(wapper.ErrIO, "unexpected chunk type %q from the server", typ)
		}
	}
}

// decodeChunk checks one chunk's security and returns its request id and
// body.
func (c *channel) decodeChunk(typ string, chunk []byte) (uint32, []byte, error) {
	bad := func(format string, args ...any) (uint32, []byte, error) {
		return 0, nil, wapper.Errorf(wapper.ErrIO, "%s chunk: "+format, append([]any{typ}, args...)...)
	}
	if len(chunk) < 12 {
		return bad("too short")
	}
	chID := binary.LittleEndian.Uint32(chunk[8:])
	if c.id != 0 && chID != c.id {
		return bad("secure channel %d, want %d", chID, c.id)
	}
	rest := chunk[12:]
	asym := typ[:3] == "OPN"
	var algo *uapolicy.EncryptionAlgorithm
	if asym {
		policy, r, ok := readString(rest)
		if !ok {
			return bad("malformed security header")
		}
		cert, r, ok := readBytes(r)
		if !ok {
			return bad("malformed security header")
		}
		thumb, r, ok := readBytes(r)
		if !ok {
			return bad("malformed security header")
		}
		rest = r
		if policy != c.sec.policy {
			return bad("security policy %s, want %s", policy, c.sec.policy)
		}
		if !c.sec.none() {
			if err := sameLeaf(cert, c.sec.remoteCert); err != nil {
				return bad("%v", err)
			}
			want := sha1.Sum(c.sec.localCert)
			if !bytes.Equal(thumb, want[:]) {
				return bad("encrypted for another certificate (thumbprint % x)", thumb)
			}
		}
		algo = c.asym
	} else {
		if len(rest) < 4 {
			return bad("too short")
		}
		tok := binary.LittleEndian.Uint32(rest)
		rest = rest[4:]
		if !c.sec.none() {
			algo = c.recv[tok]
			if algo == nil {
				return bad("unknown security token %d", tok)
			}
		}
	}
	hdr := len(chunk) - len(rest)
	plain := chunk
	if !c.sec.none() {
		if asym || c.sec.mode == ua.MessageSecurityModeSignAndEncrypt {
			if len(rest)%algo.BlockSize() != 0 && !asym {
				return bad("%d encrypted bytes are not whole blocks", len(rest))
			}
			dec, err := algo.Decrypt(rest)
			if err != nil {
				return bad("decrypt: %v", err)
			}
			plain = append(append(make([]byte, 0, hdr+len(dec)), chunk[:hdr]...), dec...)
		}
		sigLen := algo.RemoteSignatureLength()
		if len(plain) < hdr+8+sigLen {
			return bad("too short for its signature")
		}
		signed := plain[:len(plain)-sigLen]
		if err := algo.VerifySignature(signed, plain[len(plain)-sigLen:]); err != nil {
			return bad("signature does not verify: %v", err)
		}
		plain = signed
		if asym || c.sec.mode == ua.MessageSecurityModeSignAndEncrypt {
			n := len(plain)
			pad := int(plain[n-1]) + 1
			if asym && algo.SignatureLength() > 256 {
				pad = int(plain[n-1])<<8 + int(plain[n-2]) + 2
			}
			if n-pad < hdr+8 {
				return bad("padding of %d bytes is longer than the chunk", pad)
			}
			plain = plain[:n-pad]
		}
	}
	if len(plain) < hdr+8 {
		return bad("too short")
	}
	seq := binary.LittleEndian.Uint32(plain[hdr:])
	reqID := binary.LittleEndian.Uint32(plain[hdr+4:])
	if c.havePeer && seq != c.peerSeq+1 && !(c.peerSeq > math.MaxUint32-1024 && seq < 1024) {
		return bad("sequence number %d after %d", seq, c.peerSeq)
	}
	c.peerSeq, c.havePeer = seq, true
	return reqID, plain[hdr+8:], nil
}

// install takes the token of an OpenSecureChannel response: its channel
// id, and the symmetric keys from the client's and the server's nonces.
func (c *channel) install(resp *ua.OpenSecureChannelResponse, clientNonce []byte) error {
	tok := resp.SecurityToken
	if tok == nil {
		return wapper.Errorf(wapper.ErrIO, "OpenSecureChannel response without a security token")
	}
	if c.id != 0 && tok.ChannelID != c.id {
		return wapper.Errorf(wapper.ErrIO, "renewed token is for channel %d, want %d", tok.ChannelID, c.id)
	}
	algo, err := uapolicy.Symmetric(ua.SecurityPolicyURINone, nil, nil)
	if !c.sec.none() {
		if want := c.asym.NonceLength(); len(resp.ServerNonce) != want {
			return wapper.Errorf(wapper.ErrIO, "server nonce of %d bytes, want %d", len(resp.ServerNonce), want)
		}
		algo, err = uapolicy.Symmetric(c.sec.policy, clientNonce, resp.ServerNonce)
	}
	if err != nil {
		return wapper.Errorf(wapper.ErrInternal, "derive keys: %v", err)
	}
	if c.token != 0 && c.token != tok.TokenID {
		if c.oldToken != 0 {
			delete(c.recv, c.oldToken)
		}
		c.oldToken = c.token
	}
	c.id, c.token, c.send = tok.ChannelID, tok.TokenID, algo
	c.recv[tok.TokenID] = algo
	life := time.Duration(tok.RevisedLifetime) * time.Millisecond
	if life <= 0 {
		life = time.Hour
	}
	now := time.Now()
	c.renewAt, c.expiresAt = now.Add(life*3/4), now.Add(life)
	return nil
}

// sameLeaf checks that the certificate (chain) a server sent starts with
// the certificate the client trusts.
func sameLeaf(sent, want []byte) error {
	if bytes.HasPrefix(sent, want) {
		return nil
	}
	if certs, err := x509.ParseCertificates(sent); err == nil && len(certs) > 0 && bytes.Equal(certs[0].Raw, want) {
		return nil
	}
	return fmt.Errorf("server presented another certificate than the one the channel was opened for")
}
