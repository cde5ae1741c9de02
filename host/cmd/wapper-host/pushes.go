package main

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/hostio"
	"wapper.dev/wapper/host/mqtt"
	"wapper.dev/wapper/host/push"
	"wapper.dev/wapper/host/sink"
	"wapper.dev/wapper/host/store"
)

// startPushes starts, in the outputs stage, what sends device events out:
// the MQTT bridge (the EventBus topics on bus, and pushMethod.mqtt), the
// pushMethod.http pusher, the data sinks (pushMethod.dbMethod and otel,
// queued in st, with credentials from secrets), and the warning about
// pushMethod.anomalyDetection, not supported yet. Each subscribes before it returns, so that no event of
// the devices started later is missed. bus is nil when the host has no
// MQTT broker: the bridge then publishes only the pushMethod.mqtt that name
// their own broker.
func startPushes(o options, lc *lifecycle, mgr *devices.Manager, bus mqtt.Conn, st *store.Store, secrets hostio.Secrets, log *slog.Logger, reg prometheus.Registerer) error {
	noTwinGet := !o.dmi.twinGet.answers(o.dmi.enabled, o.mqttBroker)
	switch {
	case bus == nil:
		log.Info("no MQTT broker (--mqtt-listen \"\" and no --mqtt-broker): EventBus topics not published; pushMethod.mqtt goes only to the broker its address names")
	case noTwinGet:
		log.Info("not answering twin/get over MQTT: edgecore answers it on its broker (--mqtt-twin-get=true to answer too)")
	}
	bridge := mqtt.NewBridge(mgr, bus, mqtt.BridgeOptions{Logger: log, Registerer: reg, PushFormat: o.pushFormat, NoTwinGet: noTwinGet})
	if err := bridge.Subscribe(); err != nil {
		return err
	}
	lc.Go(stageOutputs, "MQTT bridge", bridge.Run)
	pusher := push.NewHTTP(mgr, push.Options{Logger: log, Registerer: reg, Format: o.pushFormat})
	pusher.Subscribe()
	lc.Go(stageOutputs, "HTTP pusher", pusher.Run)
	if o.sinkBuffer <= 0 {
		return fmt.Errorf("--sink-buffer %d: want a number of readings, 1 or more", o.sinkBuffer)
	}
	sinks := sink.New(mgr, sink.Options{DB: st.DB(), Path: st.Path(), Logger: log, Registerer: reg, Buffer: o.sinkBuffer, Secrets: secrets})
	sinks.Subscribe()
	lc.Go(stageOutputs, "data sinks", sinks.Run)
	unsupported := push.NewUnsupported(mgr, log)
	unsupported.Subscribe()
	lc.Go(stageOutputs, "unsupported-push warner", unsupported.Run)
	return nil
}
