package main

// The OPC UA client: one connection, secure channel and session per device,
// and the services the mapper uses, each a synchronous request and
// response. Nothing runs in the background (a wasm instance runs Go code
// only during a call, and a host I/O call blocks the whole instance), so
// the client reads the connection only while it waits for an answer: a
// Publish response that arrives then, or in a poll, is handled on the
// spot; a late answer to a request that timed out is dropped.

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/gopcua/opcua/ua"

	wapper "wapper.dev/wapper/sdk-go"
)

// faultError is a service result the server answered with.
type faultError struct {
	op     string
	status ua.StatusCode
}

func (e *faultError) Error() string { return e.op + ": " + statusText(e.status) }

// Unwrap gives the code the host sees: the device answered with an error.
func (e *faultError) Unwrap() error {
	return &wapper.Error{Code: wapper.ErrDeviceFailed, Message: e.Error()}
}

// statusText names a status code: "BadNodeIdUnknown (0x80340000)".
func statusText(s ua.StatusCode) string {
	if d, ok := ua.StatusCodes[s]; ok {
		name := d.Name
		if len(name) > 6 && name[:6] == "Status" {
			name = name[6:]
		}
		return fmt.Sprintf("%s (0x%08X)", name, uint32(s))
	}
	return fmt.Sprintf("status 0x%08X", uint32(s))
}

func statusError(code uint32) error { return errors.New(statusText(ua.StatusCode(code))) }

// isBad reports whether a status code is Bad (severity bits 10).
func isBad(s ua.StatusCode) bool { return uint32(s)&0x80000000 != 0 }

// sessionLost reports whether a fault means the session or channel is
// gone, so that the client connects again.
func sessionLost(err error) bool {
	var f *faultError
	if !errors.As(err, &f) {
		return false
	}
	switch f.status {
	case ua.StatusBadSessionIDInvalid, ua.StatusBadSessionClosed, ua.StatusBadSessionNotActivated,
		ua.StatusBadSecureChannelIDInvalid, ua.StatusBadSecureChannelClosed, ua.StatusBadSecureChannelTokenUnknown,
		ua.StatusBadTooManySessions, ua.StatusBadServerHalted, ua.StatusBadShutdown:
		return true
	}
	return false
}

// session is an activated session's state.
type session struct {
	authToken *ua.NodeID
}

// subscription is the device's subscription and its Publish requests.
type subscription struct {
	id uint32 // 0: none yet
	// inFlight are the request ids of the Publish requests the server
	// holds; maxInFlight how many the client keeps there.
	inFlight    map[uint32]bool
	maxInFlight int
	acks        []*ua.SubscriptionAcknowledgement
	// more is set when the server said it has more notifications.
	more bool
}

// client talks to one OPC UA server for one device. It connects lazily,
// and after a transport error drops the connection, so that the next
// request connects again.
type client struct {
	cfg  *protocolConfig
	name string // the device, for the session name

	ch   *channel
	sess *session
	sub  subscription
	// resolved are the node ids of browse paths on this connection.
	resolved map[string]*ua.NodeID

	// onData receives the values of data change notifications, by
	// monitored item client handle (the property handle).
	onData func(handle uint32, dv *ua.DataValue)
	// onSubscribe lists the items to monitor when the client creates its
	// subscription.
	items func() ([]*ua.MonitoredItemCreateRequest, error)
	// itemErrs are the monitored items the server refused, by handle.
	itemErrs map[uint32]error

	lastErr error
	ok      bool
}

func (c *client) fail(err error) error {
	c.ok, c.lastErr = false, err
	return err
}

// lost drops an open connection after err, saying so in the log.
func (c *client) lost(err error) {
	if c.ch != nil && c.sess != nil {
		wapper.Log.Info("OPC UA connection dropped", "url", c.cfg.url, "err", err)
	}
	c.drop()
}

// drop closes the connection without a goodbye.
func (c *client) drop() {
	if c.ch != nil {
		c.ch.t.close()
		c.ch = nil
	}
	c.sess = nil
	c.sub = subscription{}
	c.resolved = nil
}

// close ends the session and the channel politely, then drops the
// connection.
func (c *client) close() {
	if c.ch != nil && c.sess != nil {
		deadline := time.Now().Add(min(c.cfg.timeout, 500*time.Millisecond))
		if _, err := c.roundTrip(&ua.CloseSessionRequest{DeleteSubscriptions: true}, deadline); err == nil {
			c.sendOnly(&ua.CloseSecureChannelRequest{}, deadline)
		}
	}
	c.drop()
}

// call sends a request and returns its response, connecting first when
// needed. A request on a connection that was already open is tried again
// once on a new connection when the old one turns out to be gone.
func (c *client) call(req ua.Request) (any, error) {
	fresh := false
	if c.ch == nil {
		if err := c.connect(); err != nil {
			c.drop()
			return nil, c.fail(err)
		}
		fresh = true
	}
	resp, err := c.roundTrip(req, time.Now().Add(c.cfg.timeout))
	if err != nil && !fresh && (wapper.IsClosed(err) || sessionLost(err)) {
		c.lost(err)
		if err := c.connect(); err != nil {
			c.drop()
			return nil, c.fail(err)
		}
		resp, err = c.roundTrip(req, time.Now().Add(c.cfg.timeout))
	}
	if err != nil {
		var f *faultError
		if !errors.As(err, &f) || sessionLost(err) {
			c.lost(err)
			return nil, c.fail(err)
		}
		// The server answered: the connection is fine.
		c.ok, c.lastErr = true, nil
		return nil, err
	}
	c.ok, c.lastErr = true, nil
	return resp, nil
}

// roundTrip sends a request on the open channel and waits for its answer,
// renewing the channel's token first when it is due.
func (c *client) roundTrip(req ua.Request, deadline time.Time) (any, error) {
	if time.Now().After(c.ch.renewAt) {
		if err := c.openChannel(true, deadline); err != nil {
			return nil, err
		}
	}
	id, err := c.send(req, deadline)
	if err != nil {
		return nil, err
	}
	return c.await(id, req, deadline)
}

// opName names a request for errors: "Read", "CreateSession".
func opName(req any) string {
	s := fmt.Sprintf("%T", req)
	if i := len("*ua."); len(s) > i {
		s = s[i:]
	}
	if n := len(s) - len("Request"); n > 0 && s[n:] == "Request" {
		s = s[:n]
	}
	return s
}

// send encodes a request with its header and writes it; it returns the
// request id to wait for.
func (c *client) send(req ua.Request, deadline time.Time) (uint32, error) {
	id := c.ch.requestID()
	auth := ua.NewTwoByteNodeID(0)
	if c.sess != nil {
		auth = c.sess.authToken
	}
	hint := uint32(0)
	if _, publish := req.(*ua.PublishRequest); !publish {
		hint = uint32(time.Until(deadline) / time.Millisecond)
	}
	req.SetHeader(&ua.RequestHeader{
		AuthenticationToken: auth,
		Timestamp:           time.Now(),
		RequestHandle:       id,
		TimeoutHint:         hint,
		AdditionalHeader:    ua.NewExtensionObject(nil),
	})
	body, err := encodeRequest(req)
	if err != nil {
		return 0, wapper.Errorf(wapper.ErrInternal, "encode %s: %v", opName(req), err)
	}
	typ := "MSG"
	switch req.(type) {
	case *ua.OpenSecureChannelRequest:
		typ = "OPN"
	case *ua.CloseSecureChannelRequest:
		typ = "CLO"
	}
	return id, c.ch.sendMessage(typ, id, body, deadline)
}

// encodeRequest encodes a request with its type id: by hand for the
// requests of every cycle (fastpath.go), else with the ua package.
func encodeRequest(req ua.Request) ([]byte, error) {
	if b, ok, err := encodeFast(req); ok {
		return b, err
	}
	typeID := ua.ServiceTypeID(req)
	if typeID == 0 {
		return nil, fmt.Errorf("no type id for %T", req)
	}
	buf := ua.NewBuffer(nil)
	buf.WriteStruct(ua.NewFourByteExpandedNodeID(0, typeID))
	buf.WriteStruct(req)
	return buf.Bytes(), buf.Error()
}

// decodeService decodes a response: by hand for a Read response, else
// with the ua package.
func decodeService(body []byte) (any, error) {
	if v, ok, err := decodeFast(body); ok {
		return v, err
	}
	_, v, err := ua.DecodeService(body)
	return v, err
}

// sendOnly sends a request that has no answer (CloseSecureChannel).
func (c *client) sendOnly(req ua.Request, deadline time.Time) {
	c.send(req, deadline)
}

// await reads messages until the answer to request id comes, handling
// the Publish responses that come first and dropping late answers.
func (c *client) await(id uint32, req any, deadline time.Time) (any, error) {
	for {
		m, err := c.ch.receive(deadline)
		if err != nil {
			return nil, err
		}
		if m.reqID != id {
			c.unsolicited(m)
			continue
		}
		return decodeResponse(m, req)
	}
}

// decodeResponse decodes a message's service and turns a ServiceFault or
// a Bad service result into a faultError. req is the request it answers,
// named in errors.
func decodeResponse(m message, req any) (any, error) {
	op := func() string { return opName(req) }
	if m.abort != nil {
		return nil, wapper.Errorf(wapper.ErrDeviceFailed, "%s: server aborted the response: %v", op(), m.abort)
	}
	v, err := decodeService(m.body)
	if err != nil {
		return nil, wapper.Errorf(wapper.ErrIO, "%s: decode response: %v", op(), err)
	}
	if f, ok := v.(*ua.ServiceFault); ok {
		s := ua.StatusBadUnexpectedError
		if f.ResponseHeader != nil {
			s = f.ResponseHeader.ServiceResult
		}
		return nil, &faultError{op: op(), status: s}
	}
	if r, ok := v.(ua.Response); ok && r.Header() != nil && isBad(r.Header().ServiceResult) {
		return nil, &faultError{op: op(), status: r.Header().ServiceResult}
	}
	return v, nil
}

// unsolicited handles a message that answers another request than the
// one awaited: a Publish response, or a late answer, which is dropped.
func (c *client) unsolicited(m message) {
	if !c.sub.inFlight[m.reqID] {
		return
	}
	delete(c.sub.inFlight, m.reqID)
	v, err := decodeResponse(m, (*ua.PublishRequest)(nil))
	if err != nil {
		var f *faultError
		if errors.As(err, &f) {
			switch f.status {
			case ua.StatusBadTooManyPublishRequests:
				c.sub.maxInFlight = max(1, len(c.sub.inFlight))
			case ua.StatusBadNoSubscription, ua.StatusBadSubscriptionIDInvalid:
				c.sub.id = 0
			}
		}
		return
	}
	resp, ok := v.(*ua.PublishResponse)
	if !ok || resp.SubscriptionID != c.sub.id || c.sub.id == 0 {
		return
	}
	c.sub.more = resp.MoreNotifications
	n := resp.NotificationMessage
	if n == nil || len(n.NotificationData) == 0 {
		return // a keep-alive
	}
	c.sub.acks = append(c.sub.acks, &ua.SubscriptionAcknowledgement{SubscriptionID: resp.SubscriptionID, SequenceNumber: n.SequenceNumber})
	for _, eo := range n.NotificationData {
		if eo == nil {
			continue
		}
		switch x := eo.Value.(type) {
		case *ua.DataChangeNotification:
			for _, item := range x.MonitoredItems {
				if item != nil && item.Value != nil && c.onData != nil {
					c.onData(item.ClientHandle, item.Value)
				}
			}
		case *ua.StatusChangeNotification:
			if isBad(x.Status) {
				c.sub.id = 0 // the subscription ended (timed out, say)
			}
		}
	}
}

// nonce returns n random bytes.
func nonce(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, wapper.Errorf(wapper.ErrInternal, "random nonce: %v", err)
	}
	return b, nil
}

// openChannel issues (or renews) the channel's security token.
func (c *client) openChannel(renew bool, deadline time.Time) error {
	var clientNonce []byte
	if c.ch.sec.none() {
		clientNonce = []byte{}
	} else {
		var err error
		if clientNonce, err = nonce(c.ch.asym.NonceLength()); err != nil {
			return err
		}
	}
	typ := ua.SecurityTokenRequestTypeIssue
	if renew {
		typ = ua.SecurityTokenRequestTypeRenew
	}
	v, err := c.roundTripNoRenew(&ua.OpenSecureChannelRequest{
		ClientProtocolVersion: 0,
		RequestType:           typ,
		SecurityMode:          c.ch.sec.mode,
		ClientNonce:           clientNonce,
		RequestedLifetime:     uint32(c.cfg.channelLifetime / time.Millisecond),
	}, deadline)
	if err != nil {
		return err
	}
	resp, ok := v.(*ua.OpenSecureChannelResponse)
	if !ok {
		return wapper.Errorf(wapper.ErrIO, "OpenSecureChannel answered with %T", v)
	}
	if err := c.ch.install(resp, clientNonce); err != nil {
		return err
	}
	if renew {
		wapper.Log.Debug("OPC UA security token renewed", "url", c.cfg.url, "token", c.ch.token, "lifetime", time.Duration(resp.SecurityToken.RevisedLifetime)*time.Millisecond)
	}
	return nil
}

func (c *client) roundTripNoRenew(req ua.Request, deadline time.Time) (any, error) {
	id, err := c.send(req, deadline)
	if err != nil {
		return nil, err
	}
	return c.await(id, req, deadline)
}

// connect dials the server, opens a secure channel and activates a
// session. Secrets are read on every connect, so that a rotated password
// or certificate applies from the next connection.
func (c *client) connect() error {
	cr, err := loadCredentials(c.cfg)
	if err != nil {
		return err
	}
	sec := security{policy: c.cfg.policy, mode: c.cfg.mode}
	if !sec.none() {
		sec.localCert, sec.localKey = cr.cert.Raw, cr.key
		server := cr.pinned
		if server == nil {
			if server, err = c.discover(cr); err != nil {
				return err
			}
		}
		sec.remoteCert, sec.remoteKey = server.Raw, server.PublicKey.(*rsa.PublicKey)
	}
	t, err := c.dial(time.Now().Add(c.cfg.timeout))
	if err != nil {
		return err
	}
	if c.ch, err = newChannel(t, sec); err != nil {
		t.close()
		return err
	}
	c.resolved = map[string]*ua.NodeID{}
	c.sub = subscription{}
	if err := c.openChannel(false, time.Now().Add(c.cfg.timeout)); err != nil {
		return err
	}
	return c.createSession(cr)
}

// dial connects through the host and makes the Hello.
func (c *client) dial(deadline time.Time) (*transport, error) {
	conn, err := wapper.Dial("tcp", c.cfg.addr, time.Until(deadline))
	if err != nil {
		return nil, err
	}
	t := newTransport(conn)
	if err := t.hello(c.cfg.url, deadline); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// discover asks the server for its endpoints over a channel without
// security, and returns the certificate of the endpoint with the
// configured policy and mode once the trusted CA vouches for it.
func (c *client) discover(cr *credentials) (*x509.Certificate, error) {
	t, err := c.dial(time.Now().Add(c.cfg.timeout))
	if err != nil {
		return nil, err
	}
	d := &client{cfg: c.cfg, name: c.name}
	if d.ch, err = newChannel(t, security{policy: ua.SecurityPolicyURINone, mode: ua.MessageSecurityModeNone}); err != nil {
		t.close()
		return nil, err
	}
	defer d.drop()
	deadline := time.Now().Add(c.cfg.timeout)
	if err := d.openChannel(false, deadline); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	v, err := d.roundTrip(&ua.GetEndpointsRequest{EndpointURL: c.cfg.url}, deadline)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	resp, ok := v.(*ua.GetEndpointsResponse)
	if !ok {
		return nil, wapper.Errorf(wapper.ErrIO, "GetEndpoints answered with %T", v)
	}
	d.sendOnly(&ua.CloseSecureChannelRequest{}, deadline)
	var offered []string
	for _, ep := range resp.Endpoints {
		if ep == nil {
			continue
		}
		if ep.SecurityPolicyURI == c.cfg.policy && ep.SecurityMode == c.cfg.mode {
			return cr.trust(ep.ServerCertificate)
		}
		offered = append(offered, policyName(ep.SecurityPolicyURI)+"/"+modeName(ep.SecurityMode))
	}
	return nil, wapper.Errorf(wapper.ErrUnavailable, "the server offers no %s/%s endpoint (it offers %v)",
		policyName(c.cfg.policy), modeName(c.cfg.mode), offered)
}

// createSession creates and activates the session.
func (c *client) createSession(cr *credentials) error {
	sec := &c.ch.sec
	clientNonce, err := nonce(32)
	if err != nil {
		return err
	}
	appURI := defaultAppURI
	if cr.cert != nil && len(cr.cert.URIs) > 0 {
		appURI = cr.cert.URIs[0].String()
	}
	v, err := c.roundTrip(&ua.CreateSessionRequest{
		ClientDescription: &ua.ApplicationDescription{
			ApplicationURI:  appURI,
			ProductURI:      productURI,
			ApplicationName: ua.NewLocalizedText("wapper OPC UA mapper"),
			ApplicationType: ua.ApplicationTypeClient,
		},
		EndpointURL:             c.cfg.url,
		SessionName:             "wapper " + c.name,
		ClientNonce:             clientNonce,
		ClientCertificate:       sec.localCert,
		RequestedSessionTimeout: float64(c.cfg.sessionTimeout / time.Millisecond),
		MaxResponseMessageSize:  maxMessageSize,
	}, time.Now().Add(c.cfg.timeout))
	if err != nil {
		return err
	}
	cs, ok := v.(*ua.CreateSessionResponse)
	if !ok || cs.AuthenticationToken == nil {
		return wapper.Errorf(wapper.ErrIO, "CreateSession answered with %T", v)
	}
	if !sec.none() {
		if err := sameLeaf(cs.ServerCertificate, sec.remoteCert); err != nil {
			return wapper.Errorf(wapper.ErrUnavailable, "CreateSession: %v", err)
		}
		sig := cs.ServerSignature
		if sig == nil || c.ch.asym.VerifySignature(concat(sec.localCert, clientNonce), sig.Signature) != nil {
			return wapper.Errorf(wapper.ErrUnavailable, "CreateSession: the server's signature does not verify")
		}
	}
	c.sess = &session{authToken: cs.AuthenticationToken}
	activated := false
	defer func() {
		if !activated {
			// Leave no session behind that the server would keep until
			// it times out.
			c.roundTrip(&ua.CloseSessionRequest{DeleteSubscriptions: true}, time.Now().Add(min(c.cfg.timeout, 500*time.Millisecond)))
			c.sess = nil
		}
	}()
	act := &ua.ActivateSessionRequest{
		ClientSignature:    &ua.SignatureData{},
		UserTokenSignature: &ua.SignatureData{},
		LocaleIDs:          []string{},
	}
	if !sec.none() {
		// Over the server's certificate: its leaf, when it sent a chain.
		s, err := c.ch.asym.Signature(concat(sec.remoteCert, cs.ServerNonce))
		if err != nil {
			return wapper.Errorf(wapper.ErrInternal, "sign the session: %v", err)
		}
		act.ClientSignature = &ua.SignatureData{Algorithm: c.ch.asym.SignatureURI(), Signature: s}
	}
	if act.UserIdentityToken, act.UserTokenSignature, err = c.identity(cr, cs); err != nil {
		return err
	}
	if _, err := c.roundTrip(act, time.Now().Add(c.cfg.timeout)); err != nil {
		var f *faultError
		if errors.As(err, &f) {
			switch f.status {
			case ua.StatusBadUserAccessDenied, ua.StatusBadIdentityTokenInvalid, ua.StatusBadIdentityTokenRejected:
				return wapper.Errorf(wapper.ErrDeviceFailed, "the server refused the %s: %v", cr.identityName(), statusText(f.status))
			}
		}
		return err
	}
	activated = true
	wapper.Log.Info("OPC UA session activated", "url", c.cfg.url, "securityPolicy", policyName(sec.policy),
		"securityMode", modeName(sec.mode), "user", cr.identityName())
	return nil
}

// leafOf returns the first certificate of a DER chain.
func leafOf(der []byte) ([]byte, error) {
	certs, err := x509.ParseCertificates(der)
	if err != nil || len(certs) == 0 {
		return nil, wapper.Errorf(wapper.ErrUnavailable, "the server's certificate does not parse: %v", err)
	}
	return certs[0].Raw, nil
}

func concat(a, b []byte) []byte { return append(append(make([]byte, 0, len(a)+len(b)), a...), b...) }

// tokenPolicy finds the user token policy of a type among the endpoints
// the server described in CreateSession, preferring the endpoint with the
// channel's policy and mode.
func (c *client) tokenPolicy(eps []*ua.EndpointDescription, typ ua.UserTokenType) *ua.UserTokenPolicy {
	for pass := range 2 {
		for _, ep := range eps {
			if ep == nil || pass == 0 && (ep.SecurityPolicyURI != c.cfg.policy || ep.SecurityMode != c.cfg.mode) {
				continue
			}
			for _, p := range ep.UserIdentityTokens {
				if p != nil && p.TokenType == typ {
					return p
				}
			}
		}
	}
	return nil
}

// identity makes the user identity token and its signature.
func (c *client) identity(cr *credentials, cs *ua.CreateSessionResponse) (*ua.ExtensionObject, *ua.SignatureData, error) {
	sec := &c.ch.sec
	empty := &ua.SignatureData{}
	typ := ua.UserTokenTypeAnonymous
	switch {
	case cr.userName != "":
		typ = ua.UserTokenTypeUserName
	case cr.userCert != nil:
		typ = ua.UserTokenTypeCertificate
	}
	p := c.tokenPolicy(cs.ServerEndpoints, typ)
	if p == nil && len(cs.ServerEndpoints) == 0 && typ == ua.UserTokenTypeAnonymous {
		// Some servers list no endpoints for a URL that is not theirs
		// (a port forwarded, a proxy): try the usual anonymous policy.
		p = &ua.UserTokenPolicy{PolicyID: "Anonymous", TokenType: typ}
	}
	if p == nil && len(cs.ServerEndpoints) == 0 {
		return nil, nil, wapper.Errorf(wapper.ErrUnsupported, "the server described no endpoints for %s (is it the URL the server knows itself by?), so the %s cannot be sent",
			c.cfg.url, cr.identityName())
	}
	if p == nil {
		return nil, nil, wapper.Errorf(wapper.ErrUnsupported, "the server accepts no %s on its %s/%s endpoint",
			cr.identityName(), policyName(c.cfg.policy), modeName(c.cfg.mode))
	}
	// The token's own policy secures it; without one, the channel's.
	policy := p.SecurityPolicyURI
	if policy == "" {
		policy = sec.policy
	}
	switch typ {
	case ua.UserTokenTypeAnonymous:
		return ua.NewExtensionObject(&ua.AnonymousIdentityToken{PolicyID: p.PolicyID}), empty, nil
	case ua.UserTokenTypeUserName:
		tok := &ua.UserNameIdentityToken{PolicyID: p.PolicyID, UserName: cr.userName}
		if policy == ua.SecurityPolicyURINone {
			// The password would cross in clear text unless the
			// channel encrypts it.
			if sec.mode != ua.MessageSecurityModeSignAndEncrypt {
				return nil, nil, wapper.Errorf(wapper.ErrUnsupported,
					"the server's user token policy %q would send the password in clear text over a channel that does not encrypt (securityMode %s): use securityMode SignAndEncrypt",
					p.PolicyID, modeName(sec.mode))
			}
			tok.Password = cr.password
			return ua.NewExtensionObject(tok), empty, nil
		}
		key, err := certKey(cs.ServerCertificate, cr)
		if err != nil {
			return nil, nil, err
		}
		enc, err := asymmetricFor(policy, nil, key)
		if err != nil {
			return nil, nil, err
		}
		secret := make([]byte, 0, 4+len(cr.password)+len(cs.ServerNonce))
		n := uint32(len(cr.password) + len(cs.ServerNonce))
		secret = append(secret, byte(n), byte(n>>8), byte(n>>16), byte(n>>24))
		secret = append(append(secret, cr.password...), cs.ServerNonce...)
		if tok.Password, err = enc.Encrypt(secret); err != nil {
			return nil, nil, wapper.Errorf(wapper.ErrInternal, "encrypt the password: %v", err)
		}
		clear(secret)
		tok.EncryptionAlgorithm = enc.EncryptionURI()
		return ua.NewExtensionObject(tok), empty, nil
	default:
		if policy == ua.SecurityPolicyURINone {
			return nil, nil, wapper.Errorf(wapper.ErrUnsupported,
				"an X.509 user certificate needs a security policy to sign with: the server's token policy %q and the channel have none", p.PolicyID)
		}
		key, err := certKey(cs.ServerCertificate, cr)
		if err != nil {
			return nil, nil, err
		}
		alg, err := asymmetricFor(policy, cr.userKey, key)
		if err != nil {
			return nil, nil, err
		}
		leaf, err := leafOf(cs.ServerCertificate)
		if err != nil {
			return nil, nil, err
		}
		sig, err := alg.Signature(concat(leaf, cs.ServerNonce))
		if err != nil {
			return nil, nil, wapper.Errorf(wapper.ErrInternal, "sign with the user certificate: %v", err)
		}
		tok := &ua.X509IdentityToken{PolicyID: p.PolicyID, CertificateData: cr.userCert.Raw}
		return ua.NewExtensionObject(tok), &ua.SignatureData{Algorithm: alg.SignatureURI(), Signature: sig}, nil
	}
}
