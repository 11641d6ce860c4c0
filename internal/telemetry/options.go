package telemetry

import (
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// measureOptions are the options of one recording with one attribute
// set, made once: attribute.NewSet sorts and hashes its attributes, and
// every option boxes the set, at each call otherwise.
type measureOptions struct {
	record []metric.RecordOption
	add    []metric.AddOption
}

func optionsOf(set attribute.Set) measureOptions {
	opt := metric.WithAttributeSet(set)
	return measureOptions{record: []metric.RecordOption{opt}, add: []metric.AddOption{opt}}
}

// maxCachedOptions bounds an optionCache. Its keys are metric labels,
// bounded already (routes are patterns, methods a fixed set, regions and
// components few); past the bound, options are made per call.
const maxCachedOptions = 4096

// optionKey is the labels of one recording, which make its options.
type optionKey interface {
	comparable
	options() measureOptions
}

// optionCache keeps the measureOptions of each key a recording is made
// with.
type optionCache[K optionKey] struct {
	mu sync.RWMutex // guards m
	m  map[K]measureOptions
}

// get returns the options of key, made the first time it is seen.
func (c *optionCache[K]) get(key K) measureOptions {
	c.mu.RLock()
	o, ok := c.m[key]
	c.mu.RUnlock()
	if ok {
		return o
	}
	o = key.options()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[K]measureOptions{}
	}
	if len(c.m) < maxCachedOptions {
		c.m[key] = o
	}
	return o
}
