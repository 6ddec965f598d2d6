package engine

import (
	"context"
	"slices"
	"sync"

	"github.com/faas-platform/faas/agent"
	"github.com/faas-platform/faas/sandbox"
)

// box is a sandbox as the engine keeps it: with the languages whose zygote is
// already running in it.
type box struct {
	sandbox.Sandbox
	mu   sync.Mutex
	warm []string

	// image is the configuration of the sandbox's image (other than the host
	// image); release lets the image store evict it again once the box is gone.
	image   ImageConfig
	release func()
}

// Destroy destroys the sandbox and releases its image.
func (b *box) Destroy(ctx context.Context) error {
	err := b.Sandbox.Destroy(ctx)
	if b.release != nil {
		b.release()
	}
	return err
}

func (b *box) isWarm(language string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.isWarmLocked(language)
}

func (b *box) isWarmLocked(language string) bool {
	return slices.Contains(b.warm, zygoteLanguage(language))
}

// warmUp starts the zygotes of the given languages in the sandbox.
func (e *Engine) warmUp(ctx context.Context, b *box, languages []string) {
	for _, lang := range languages {
		if !slices.Contains(agent.ZygoteLanguages, zygoteLanguage(lang)) || b.isWarm(lang) {
			continue
		}
		w := e.warmConfig(lang)
		w.Env = environmentWith(&Request{}, b.image.Env) // what an execution here gets unless it sets more
		if err := b.Agent().Warm(ctx, w); err != nil {
			e.log.Warn("starting zygote", "sandbox", b.ID(), "language", lang, "err", err)
			continue
		}
		b.mu.Lock()
		b.warm = append(b.warm, zygoteLanguage(lang))
		b.mu.Unlock()
	}
}

// zygoteLanguage maps a request language to the zygote that serves it ("" none).
func zygoteLanguage(lang string) string {
	switch lang {
	case "python":
		return "python"
	case "javascript", "typescript":
		return "node"
	case "bash":
		return "bash"
	}
	return ""
}

// warmConfig is the identity and limits every process of this engine gets; zygotes
// are started for exactly these.
func (e *Engine) warmConfig(lang string) agent.Warm {
	l := e.cfg.Limits
	return agent.Warm{Language: zygoteLanguage(lang), UID: UserUID, GID: UserGID, MaxProcs: l.MaxProcs, MaxOpenFiles: l.MaxOpenFiles, MaxFileBytes: l.MaxFileBytes}
}
