package cli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
)

// Log is the logging setting of a daemon: --log-level and --log-format.
// Its zero value is not usable; [AddLogFlags] sets the defaults (info,
// text).
type Log struct {
	Level  LogLevel
	Format LogFormat
}

// AddLogFlags adds --log-level and --log-format to fs, with defaults info
// and text. A bad value is refused while the flags are parsed.
func AddLogFlags(fs *pflag.FlagSet, l *Log) {
	l.Level = LogLevel(slog.LevelInfo)
	l.Format = FormatText
	fs.Var(&l.Level, "log-level", "debug, info, warn or error")
	fs.Var(&l.Format, "log-format", "text or json")
}

// Logger returns a logger writing to w as the flags say.
func (l Log) Logger(w io.Writer) *slog.Logger {
	ho := &slog.HandlerOptions{Level: slog.Level(l.Level)}
	if l.Format == FormatJSON {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// LogLevel is the value of --log-level.
type LogLevel slog.Level

// String returns the level's name in lower case.
func (v *LogLevel) String() string { return strings.ToLower(slog.Level(*v).String()) }

// Set parses debug, info, warn or error (slog's names, with offsets such
// as info+2).
func (v *LogLevel) Set(s string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("want debug, info, warn or error")
	}
	*v = LogLevel(l)
	return nil
}

// Type names the value in --help.
func (*LogLevel) Type() string { return "level" }

// LogFormat is the value of --log-format.
type LogFormat string

// The log formats.
const (
	// FormatText is slog's key=value text.
	FormatText LogFormat = "text"
	// FormatJSON is one JSON object a line.
	FormatJSON LogFormat = "json"
)

// String returns the format's name.
func (v *LogFormat) String() string { return string(*v) }

// Set parses text or json.
func (v *LogFormat) Set(s string) error {
	switch f := LogFormat(s); f {
	case FormatText, FormatJSON:
		*v = f
		return nil
	}
	return fmt.Errorf("want text or json")
}

// Type names the value in --help.
func (*LogFormat) Type() string { return "format" }
