package api

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/faas-platform/faas/store"
)

// RateLimit is the default request rate of a key: a token bucket refilled at
// PerMinute tokens a minute holding at most Burst. A key's own limits (set when
// it is created) replace it.
type RateLimit struct {
	PerMinute int
	Burst     int
}

// rateLimiter keeps one token bucket per key.
type rateLimiter struct {
	def RateLimit
	mu  sync.Mutex
	m   map[string]*bucket
}

type bucket struct {
	lim      *rate.Limiter
	perMin   int
	burst    int
	lastUsed time.Time
}

func newRateLimiter(def RateLimit) *rateLimiter {
	return &rateLimiter{def: def, m: make(map[string]*bucket)}
}

// verdict is the outcome of one request against its key's bucket.
type verdict struct {
	ok         bool
	limit      int           // the bucket's size
	remaining  int           // whole tokens left
	reset      time.Duration // until the bucket is full again
	retryAfter time.Duration // when refused: until one token is there
}

func (r *rateLimiter) take(k store.Key, now time.Time) verdict {
	perMin, burst := r.def.PerMinute, r.def.Burst
	if k.RatePerMin > 0 {
		perMin = int(k.RatePerMin)
	}
	if k.Burst > 0 {
		burst = int(k.Burst)
	}
	if perMin <= 0 {
		return verdict{ok: true}
	}
	burst = max(burst, 1)
	r.mu.Lock()
	b := r.m[k.ID]
	if b == nil || b.perMin != perMin || b.burst != burst {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(float64(perMin)/60), burst), perMin: perMin, burst: burst}
		r.m[k.ID] = b
	}
	b.lastUsed = now
	// Forget buckets unused long enough to be full again anyway.
	if len(r.m) > 1024 {
		for id, other := range r.m {
			if now.Sub(other.lastUsed) > 10*time.Minute {
				delete(r.m, id)
			}
		}
	}
	r.mu.Unlock()

	v := verdict{limit: burst}
	res := b.lim.ReserveN(now, 1)
	if delay := res.DelayFrom(now); !res.OK() || delay > 0 {
		res.CancelAt(now)
		v.retryAfter = max(delay, time.Second)
	} else {
		v.ok = true
	}
	tokens := b.lim.TokensAt(now)
	v.remaining = max(int(math.Floor(tokens)), 0)
	v.reset = time.Duration((float64(burst) - tokens) / (float64(perMin) / 60) * float64(time.Second))
	return v
}

// setHeaders writes the rate limit headers (both the IETF draft's and the
// widespread X- ones).
func (v verdict) setHeaders(h http.Header) {
	if v.limit == 0 {
		return
	}
	reset := strconv.Itoa(int(math.Ceil(v.reset.Seconds())))
	for _, p := range []string{"RateLimit-", "X-RateLimit-"} {
		h.Set(p+"Limit", strconv.Itoa(v.limit))
		h.Set(p+"Remaining", strconv.Itoa(v.remaining))
		h.Set(p+"Reset", reset)
	}
}
