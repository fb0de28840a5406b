package container

import (
	"context"
	"io"
	"log/slog"

	"github.com/sirupsen/logrus"
)

// ForwardLibraryLogs sends what libcontainer (and ttrpc, through
// containerd/log) log with logrus to log instead, so the agent's log
// stays one stream of JSON lines wherever it goes (console or vsock).
func ForwardLibraryLogs(log *slog.Logger) {
	logrus.SetOutput(io.Discard)
	logrus.AddHook(slogHook{log: log})
}

type slogHook struct{ log *slog.Logger }

func (slogHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h slogHook) Fire(e *logrus.Entry) error {
	if isPrestartHookWarning(e.Message) {
		return nil // expected on every state save, see prestartHook
	}
	level := slog.LevelDebug
	switch {
	case e.Level <= logrus.ErrorLevel:
		level = slog.LevelError
	case e.Level == logrus.WarnLevel:
		level = slog.LevelWarn
	case e.Level == logrus.InfoLevel:
		level = slog.LevelInfo
	}
	attrs := make([]slog.Attr, 0, len(e.Data)+1)
	attrs = append(attrs, slog.String("source", "libcontainer"))
	for k, v := range e.Data {
		attrs = append(attrs, slog.Any(k, v))
	}
	h.log.LogAttrs(context.Background(), level, e.Message, attrs...)
	return nil
}
