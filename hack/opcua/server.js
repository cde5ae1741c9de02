// An OPC UA server on node-opcua, the peer of wapper's OPC UA mapper plugin
// (plugins/opcua) in its tests (e2e/opcua_test.go) and benchmark. Run it
// with NODE_PATH set to the node_modules that
// hack/opcua/ensure-node-opcua.sh prints the folder of:
//
//   NODE_PATH=DIR/node_modules node hack/opcua/server.js --port 4840 --pki /tmp/pki \
//     [--cert server.crt --key server.key] [--user operator --password-file F]
//
// It serves the endpoints None, Basic256Sha256 Sign and Basic256Sha256
// SignAndEncrypt, accepts anonymous users and (with --user) one user with a
// password, and trusts any client certificate (automaticallyAcceptUnknownCertificate:
// the tests check the client side of the trust). --cert and --key (PEM) set
// the server's application certificate; without them node-opcua makes a
// self-signed one in --pki.
//
// Namespace "urn:wapper:test" (index 2) holds, under /Objects/2:Boiler:
//
//   ns=2;s=Temperature  Double   21.5         read-only
//   ns=2;s=Count        Int32    42           read-only
//   ns=2;s=Running      Boolean  true         read-only
//   ns=2;s=Label        String   "boiler-1"   read-only
//   ns=2;s=Setpoint     Double   50           writable
//   ns=2;s=Mode         Int32    1            writable
//   ns=2;s=Counter      Int32    +1 every 100 ms
//
// When it listens it prints "READY <endpoint URL>" on stdout; the tests
// wait for that line. It stops on SIGTERM or SIGINT (the tests start it
// with Pdeathsig, so a test that dies takes it along).
"use strict";
const fs = require("fs");
const { OPCUAServer } = require("node-opcua-server");
const { SecurityPolicy, MessageSecurityMode } = require("node-opcua-secure-channel");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const { nodesets } = require("node-opcua-nodesets");
const { Variant, DataType } = require("node-opcua-variant");

function args() {
  const out = { port: 4840, pki: "", cert: "", key: "", user: "", passwordFile: "" };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i += 2) {
    const k = a[i].replace(/^--/, "").replace(/-(.)/g, (_, c) => c.toUpperCase());
    if (!(k in out) || i + 1 >= a.length) {
      console.error(`server.js: bad argument ${a[i]}`);
      process.exit(2);
    }
    out[k] = k === "port" ? Number(a[i + 1]) : a[i + 1];
  }
  if (!out.pki) {
    console.error("server.js: --pki DIR is required");
    process.exit(2);
  }
  return out;
}

async function main() {
  const o = args();
  const password = o.passwordFile ? fs.readFileSync(o.passwordFile, "utf8").replace(/\n$/, "") : "";
  const pki = (sub) => {
    const m = new OPCUACertificateManager({ rootFolder: `${o.pki}/${sub}`, automaticallyAcceptUnknownCertificate: true });
    return m;
  };
  const serverCertificateManager = pki("server");
  const userCertificateManager = pki("user");
  await serverCertificateManager.initialize();
  await userCertificateManager.initialize();
  const server = new OPCUAServer({
    port: o.port,
    hostname: "127.0.0.1",
    alternateHostname: ["localhost"],
    nodeset_filename: [nodesets.standard],
    serverCertificateManager,
    userCertificateManager,
    certificateFile: o.cert || undefined,
    privateKeyFile: o.key || undefined,
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: true,
    userManager: {
      isValidUser: (user, pass) => o.user !== "" && user === o.user && pass === password,
    },
    serverInfo: { applicationUri: "urn:wapper:test-server", productUri: "urn:wapper:test-server" },
    // Room for the benchmark's clients and the tests' sessions.
    maxConnectionsPerEndpoint: 100,
    serverCapabilities: { maxSessions: 100 },
  });
  await server.initialize();

  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.registerNamespace("urn:wapper:test");
  const boiler = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "Boiler" });
  const fixed = (name, dataType, value) =>
    ns.addVariable({
      componentOf: boiler, browseName: name, nodeId: `s=${name}`, dataType,
      value: new Variant({ dataType: DataType[dataType], value }),
    });
  fixed("Temperature", "Double", 21.5);
  fixed("Count", "Int32", 42);
  fixed("Running", "Boolean", true);
  fixed("Label", "String", "boiler-1");
  const writable = (name, dataType, value) =>
    ns.addVariable({
      componentOf: boiler, browseName: name, nodeId: `s=${name}`, dataType,
      accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite",
      value: new Variant({ dataType: DataType[dataType], value }),
    });
  writable("Setpoint", "Double", 50);
  writable("Mode", "Int32", 1);
  let count = 0;
  const counter = ns.addVariable({
    componentOf: boiler, browseName: "Counter", nodeId: "s=Counter", dataType: "Int32",
    value: new Variant({ dataType: DataType.Int32, value: 0 }),
  });
  const timer = setInterval(() => {
    count = (count + 1) | 0;
    counter.setValueFromSource(new Variant({ dataType: DataType.Int32, value: count }));
  }, 100);

  await server.start();
  const url = server.getEndpointUrl();
  process.stdout.write(`READY ${url}\n`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    clearInterval(timer);
    try {
      await server.shutdown(0);
    } finally {
      process.exit(0);
    }
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error("server.js:", err && err.stack ? err.stack : err);
  process.exit(1);
});
