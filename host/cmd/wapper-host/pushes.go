package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/mqtt"
	"wapper.dev/wapper/host/push"
)

// startPushes starts what sends device events out: the MQTT bridge (the
// EventBus topics on bus, and pushMethod.mqtt), the pushMethod.http pusher,
// and the warnings about the pushMethods not supported yet. bus is nil when
// the host has no MQTT broker: the bridge then publishes only the
// pushMethod.mqtt that name their own broker. stop stops them all.
func startPushes(ctx context.Context, o options, mgr *devices.Manager, bus mqtt.Conn, log *slog.Logger, reg prometheus.Registerer) (stop func(), err error) {
	noTwinGet := !o.dmi.twinGet.answers(o.dmi.enabled, o.mqttBroker)
	switch {
	case bus == nil:
		log.Info("no MQTT broker (--mqtt-listen \"\" and no --mqtt-broker): EventBus topics not published; pushMethod.mqtt goes only to the broker its address names")
	case noTwinGet:
		log.Info("not answering twin/get over MQTT: edgecore answers it on its broker (--mqtt-twin-get=true to answer too)")
	}
	bridge := mqtt.NewBridge(mgr, bus, mqtt.BridgeOptions{Logger: log, Registerer: reg, PushFormat: o.pushFormat, NoTwinGet: noTwinGet})
	if err := bridge.Start(ctx); err != nil {
		return nil, err
	}
	pusher := push.NewHTTP(mgr, push.Options{Logger: log, Registerer: reg, Format: o.pushFormat})
	pusher.Start(ctx)
	unsupported := push.NewUnsupported(mgr, log)
	unsupported.Start()
	return func() {
		unsupported.Stop()
		pusher.Stop()
		bridge.Stop()
	}, nil
}
