package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"wapper.dev/wapper/host/devices"
	"wapper.dev/wapper/host/dmi"
	"wapper.dev/wapper/host/store"
)

// dmiOptions are the flags of the KubeEdge DMI bridge (package host/dmi).
type dmiOptions struct {
	enabled        bool
	socket         string
	edgecoreSocket string
	reportRate     float64
	twinGet        twinGetOption
}

// addDMIFlags adds the DMI bridge's flags.
func addDMIFlags(f *pflag.FlagSet, o *dmiOptions) {
	f.BoolVar(&o.enabled, "dmi", false, "register with KubeEdge edgecore over DMI as the mapper of every protocol the plugins provide")
	f.StringVar(&o.socket, "dmi-socket", dmi.DefaultSocket, "unix socket to serve DMI's DeviceMapperService on; sent to edgecore as the mapper address")
	f.StringVar(&o.edgecoreSocket, "edgecore-socket", dmi.DefaultEdgecoreSocket, "edgecore's DMI socket (edgecore's modules.deviceTwin.dmiSockPath)")
	f.Float64Var(&o.reportRate, "dmi-report-rate", dmi.DefaultReportRate, "twin and state reports sent to edgecore per second; edgecore accepts 1/s sustained for all mappers of a node")
	f.Var(&o.twinGet, "mqtt-twin-get", "answer $hw/events/device/+/twin/get on the MQTT broker: true, false, or auto (true, except with --dmi and --mqtt-broker: that broker is taken to be edgecore's, whose devicetwin answers twin/get itself, and two answers would confuse the requester)")
	f.Lookup("mqtt-twin-get").NoOptDefVal = "true"
}

// twinGetOption is --mqtt-twin-get: auto (the zero value), true or false.
type twinGetOption struct{ set, on bool }

// String returns auto, true or false.
func (v *twinGetOption) String() string {
	if !v.set {
		return "auto"
	}
	return strconv.FormatBool(v.on)
}

// Set parses auto, true or false (or another spelling of a bool).
func (v *twinGetOption) Set(s string) error {
	if s == "auto" {
		*v = twinGetOption{}
		return nil
	}
	on, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want auto, true or false")
	}
	*v = twinGetOption{set: true, on: on}
	return nil
}

// Type names the values in --help.
func (v *twinGetOption) Type() string { return "auto|bool" }

// answers reports whether the MQTT bridge answers twin/get: as set, or by
// default unless wapper-host runs beside edgecore (dmi) on an external
// broker, which is then edgecore's.
func (v twinGetOption) answers(dmi bool, broker string) bool {
	if v.set {
		return v.on
	}
	return !dmi || broker == ""
}

// startDMI starts the DMI bridge, in the inputs stage, when --dmi is set,
// after the manager has restored its state. A bridge that stops by itself
// is logged; the host keeps running its other devices.
func startDMI(o dmiOptions, lc *lifecycle, mgr *devices.Manager, st *store.Store, log *slog.Logger, reg prometheus.Registerer) error {
	if !o.enabled {
		return nil
	}
	b, err := dmi.New(dmi.Options{
		Devices: dmi.FromManager(mgr),
		DB:      st.DB(), Socket: o.socket, EdgecoreSocket: o.edgecoreSocket,
		ReportRate: o.reportRate, Logger: log, Metrics: dmi.NewMetrics(reg),
	})
	if err != nil {
		return err
	}
	lc.Go(stageInputs, "DMI bridge", func(ctx context.Context) error {
		if err := b.Run(ctx); err != nil {
			log.Error("DMI bridge stopped; restart wapper-host to serve edgecore again", "err", err)
		}
		return nil
	})
	return nil
}
