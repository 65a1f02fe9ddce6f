package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Logger logs at most Burst messages per key in each Interval; the
// messages dropped are counted and reported with the next one logged.
type Logger struct {
	log      *slog.Logger
	interval time.Duration
	burst    int
	now      func() time.Time

	mu   sync.Mutex
	keys map[string]*window
}

type window struct {
	start      time.Time
	logged     int
	suppressed int
}

// maxKeys bounds the keys remembered; past it, the windows start over.
const maxKeys = 1024

// New returns a Logger writing to log at most burst messages per key per
// interval.
func New(log *slog.Logger, interval time.Duration, burst int) *Logger {
	return &Logger{log: log, interval: interval, burst: burst, now: time.Now, keys: map[string]*window{}}
}

// Warn logs msg with args under key unless the key used up its burst in
// this interval.
func (l *Logger) Warn(key, msg string, args ...any) { l.Log(slog.LevelWarn, key, msg, args...) }

// Info is Warn at the info level.
func (l *Logger) Info(key, msg string, args ...any) { l.Log(slog.LevelInfo, key, msg, args...) }

// Log logs msg at level with args under key unless the key used up its
// burst in this interval; the next message logged says how many were
// left out.
func (l *Logger) Log(level slog.Level, key, msg string, args ...any) {
	if l == nil || l.log == nil {
		return
	}
	now := l.now()
	l.mu.Lock()
	w := l.keys[key]
	if w == nil || now.Sub(w.start) >= l.interval {
		if w == nil && len(l.keys) >= maxKeys {
			clear(l.keys)
		}
		prev := 0
		if w != nil {
			prev = w.suppressed
		}
		w = &window{start: now, suppressed: prev}
		l.keys[key] = w
	}
	if w.logged >= l.burst {
		w.suppressed++
		l.mu.Unlock()
		return
	}
	w.logged++
	suppressed := w.suppressed
	w.suppressed = 0
	l.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	l.log.Log(context.Background(), level, msg, args...)
}
