package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"wapper.dev/wapper/abi"
	wapper "wapper.dev/wapper/sdk-go"
)

func device(protocol, model string) *wapper.Device {
	d := &wapper.Device{}
	d.Namespace, d.Name = "default", "plc"
	if protocol != "" {
		d.Device.ProtocolConfig = json.RawMessage(protocol)
	}
	if model != "" {
		d.ModelConfig = json.RawMessage(model)
	}
	return d
}

func TestParseProtocol(t *testing.T) {
	c, err := parseProtocol(device(`{"url":"opc.tcp://10.0.0.5/UA/Server","timeout":"3s","publishingInterval":250}`, `{"sessionTimeout":"2m"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := protocolConfig{
		url: "opc.tcp://10.0.0.5/UA/Server", addr: "10.0.0.5:4840",
		policy: ua.SecurityPolicyURINone, mode: ua.MessageSecurityModeNone,
		timeout: 3 * time.Second, publishingInterval: 250 * time.Millisecond,
		sessionTimeout: 2 * time.Minute, channelLifetime: defaultChannelLifetime,
	}
	if *c != want {
		t.Fatalf("config\n got %+v\nwant %+v", *c, want)
	}
	c, err = parseProtocol(device(`{"url":"opc.tcp://[::1]:4841","securityPolicy":"Basic256Sha256",
		"certificateSecret":"opcua-client","caSecret":"plant-ca","userName":"op","passwordSecret":"plc-login/password"}`, ""))
	if err != nil {
		t.Fatal(err)
	}
	if c.addr != "[::1]:4841" || c.policy != ua.SecurityPolicyURIBasic256Sha256 || c.mode != ua.MessageSecurityModeSignAndEncrypt {
		t.Fatalf("secure config %+v", *c)
	}
	c, err = parseProtocol(device(`{"url":"opc.tcp://h:1","securityPolicy":"http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256",
		"securityMode":"sign","certificateSecret":"c","serverCertificateSecret":"s","userCertificateSecret":"u"}`, ""))
	if err != nil || c.mode != ua.MessageSecurityModeSign {
		t.Fatalf("Sign with a policy URI: %+v, %v", c, err)
	}
}

func TestParseProtocolErrors(t *testing.T) {
	for _, tc := range []struct{ cfg, want string }{
		{`{}`, "url is missing"},
		{`{"url":"tcp://h:4840"}`, "scheme must be opc.tcp"},
		{`{"url":"opc.tcp://op:pw@h:4840"}`, "credentials do not go in the URL"},
		{`{"url":"opc.tcp://h:99999"}`, "outside 1-65535"},
		{`{"url":"opc.tcp://h","password":"hunter2"}`, `"password" must not be in configData: put the password in a Secret`},
		{`{"url":"opc.tcp://h","Password":"hunter2"}`, `"Password" must not be in configData`},
		{`{"url":"opc.tcp://h","privateKey":"/etc/key.pem"}`, "certificateSecret"},
		{`{"url":"opc.tcp://h","securityPolicy":"Basic128Rsa15"}`, "this plugin speaks None and Basic256Sha256"},
		{`{"url":"opc.tcp://h","securityMode":"Sign"}`, "needs a securityPolicy"},
		{`{"url":"opc.tcp://h","securityMode":"Encrypt"}`, "want None, Sign or SignAndEncrypt"},
		{`{"url":"opc.tcp://h","securityPolicy":"Basic256Sha256","securityMode":"None"}`, "does not go with"},
		{`{"url":"opc.tcp://h","securityPolicy":"Basic256Sha256"}`, "needs certificateSecret"},
		{`{"url":"opc.tcp://h","securityPolicy":"Basic256Sha256","certificateSecret":"c"}`, "needs a trust for the server's certificate"},
		{`{"url":"opc.tcp://h","securityPolicy":"Basic256Sha256","certificateSecret":"c","caSecret":"a","serverCertificateSecret":"b"}`, "not both"},
		{`{"url":"opc.tcp://h","userName":"op"}`, "needs passwordSecret"},
		{`{"url":"opc.tcp://h","passwordSecret":"a/b"}`, "passwordSecret needs a userName"},
		{`{"url":"opc.tcp://h","userName":"op","passwordSecret":"login"}`, "want NAME/KEY"},
		{`{"url":"opc.tcp://h","userName":"op","passwordSecret":"a/b","userCertificateSecret":"u"}`, "not both"},
		{`{"url":"opc.tcp://h","certificateSecret":"Bad_Name"}`, "not a Secret name"},
		{`{"url":"opc.tcp://h","timeout":"soon"}`, "timeout"},
		{`{"url":"opc.tcp://h","publishingInterval":1}`, "below 10ms"},
		{`{"url":"opc.tcp://h","timeout":-5}`, "must be positive"},
		{`{"url":`, "protocol configData"},
	} {
		_, err := parseProtocol(device(tc.cfg, ""))
		if err == nil || abi.CodeOf(err) != abi.ErrInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want invalid argument mentioning %q", tc.cfg, err, tc.want)
		}
	}
}

func property(visitor string) *wapper.Property {
	return &wapper.Property{Property: abi.Property{Name: "temp", Type: "DOUBLE", Visitor: json.RawMessage(visitor)}}
}

func TestParseVisitor(t *testing.T) {
	v, err := parseVisitor(property(`{"nodeID":"ns=2;s=Temperature","subscribe":"true","samplingInterval":"50ms","dataType":"float"}`))
	if err != nil {
		t.Fatal(err)
	}
	if v.nodeID.String() != "ns=2;s=Temperature" || !v.subscribe || v.sampling != 50*time.Millisecond || v.dataType != ua.TypeIDFloat {
		t.Fatalf("visitor %+v", v)
	}
	v, err = parseVisitor(property(`{"nodeId":"i=2258"}`))
	if err != nil || v.nodeID.IntID() != 2258 || v.subscribe || v.sampling != -1 {
		t.Fatalf("nodeId i=2258: %+v, %v", v, err)
	}
	v, err = parseVisitor(property(`{"browsePath":"/Objects/2:Boiler/2:Temperature"}`))
	if err != nil || v.nodeID != nil || len(v.elems) != 3 || v.node() != "/Objects/2:Boiler/2:Temperature" {
		t.Fatalf("browsePath: %+v, %v", v, err)
	}
	for _, tc := range []struct{ visitor, want string }{
		{`{}`, "set nodeID"},
		{`{"browseName":"Temperature"}`, "set nodeID"},
		{`{"nodeID":"ns=2;s=A","browsePath":"/Objects"}`, "not both"},
		{`{"nodeID":"temperature"}`, "want a NodeId"},
		{`{"nodeID":"nsu=urn:x;s=A"}`, "namespace URIs"},
		{`{"browsePath":"Objects/A"}`, "starts at the Root folder"},
		{`{"nodeID":"i=1","dataType":"Decimal"}`, "want one of"},
		{`{"nodeID":"i=1","subscribe":"maybe"}`, "not true or false"},
		{`{"nodeID":"i=1","samplingInterval":"-1s"}`, "must not be negative"},
	} {
		_, err := parseVisitor(property(tc.visitor))
		if err == nil || abi.CodeOf(err) != abi.ErrInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want invalid argument mentioning %q", tc.visitor, err, tc.want)
		}
	}
}

func TestParseBrowsePath(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/Objects/2:Boiler/2:Temperature", "0:Objects 2:Boiler 2:Temperature"},
		{"/Objects/Server", "0:Objects 0:Server"},
		{"/Objects/3:a:b", "0:Objects 3:a:b"},
		{"/Objects/x:y", "0:Objects 0:x:y"},
		{"/Objects/2:a&/b/c&&d", "0:Objects 2:a/b 0:c&d"},
		{"/Objects/2&:x", "0:Objects 0:2:x"},
	} {
		elems, err := parseBrowsePath(tc.path)
		if err != nil {
			t.Errorf("%s: %v", tc.path, err)
			continue
		}
		var got []string
		for _, e := range elems {
			if e.ReferenceTypeID.IntID() != hierarchicalReferences || !e.IncludeSubtypes || e.IsInverse {
				t.Errorf("%s: element %+v does not follow hierarchical references", tc.path, e)
			}
			got = append(got, strconv.Itoa(int(e.TargetName.NamespaceIndex))+":"+e.TargetName.Name)
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%s: %q, want %q", tc.path, strings.Join(got, " "), tc.want)
		}
	}
	for _, tc := range []struct{ path, want string }{
		{"/", "element 1 is empty"},
		{"/Objects//x", "element 2 is empty"},
		{"/Objects/2:", "element 2 is empty"},
		{"/Objects/70000:x", "above 65535"},
		{"/Objects/x&", "escape character"},
	} {
		if _, err := parseBrowsePath(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error mentioning %q", tc.path, err, tc.want)
		}
	}
}
