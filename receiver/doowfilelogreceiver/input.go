package doowfilelogreceiver

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/collector/component"
	"go.uber.org/zap"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/stanza/entry"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/stanza/fileconsumer"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/stanza/fileconsumer/attrs"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/stanza/operator"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/stanza/operator/helper"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/stanza/operator/input/file"

	"github.com/doow/doow-otel/receiver/doowfilelogreceiver/internal/metadata"
)

// inputConfig builds the stock file input's file consumer with our emit callback (the
// stock operator's callback is unexported, so its few lines are repeated in emitBatch).
type inputConfig struct {
	file.Config
}

func (c *inputConfig) Build(set component.TelemetrySettings) (operator.Operator, error) {
	inputOperator, err := c.InputConfig.Build(set)
	if err != nil {
		return nil, err
	}
	cfg := c.Config.Config
	if cfg.Encoding == "nop" {
		return nil, errors.New("encoding: nop is not supported by doowfilelog (usage lines are text)")
	}
	// the file's path is how a fresh reader's file is found again to name it
	cfg.IncludeFilePath = true
	telemetry, err := metadata.NewTelemetryBuilder(set)
	if err != nil {
		return nil, err
	}
	in := &input{
		InputOperator:           inputOperator,
		includeFileRecordNumber: cfg.IncludeFileRecordNumber,
		includeFileRecordOffset: cfg.IncludeFileRecordOffset,
		ids:                     newFileIDs(set.Logger, statFile),
		telemetry:               telemetry,
	}
	in.ids.unnamed = func(ctx context.Context) { telemetry.DoowfilelogBatchesWithoutID.Add(ctx, 1) }
	if in.fileConsumer, err = cfg.Build(set, in.emitBatch); err != nil {
		telemetry.Shutdown()
		return nil, err
	}
	return in, nil
}

type input struct {
	helper.InputOperator
	fileConsumer            *fileconsumer.Manager
	ids                     *fileIDs
	telemetry               *metadata.TelemetryBuilder
	includeFileRecordNumber bool
	includeFileRecordOffset bool
}

func (i *input) Start(persister operator.Persister) error {
	i.ids.persister = persister
	return i.fileConsumer.Start(persister)
}

func (i *input) Stop() error {
	defer i.telemetry.Shutdown()
	return i.fileConsumer.Stop()
}

// emitBatch names the batch's file (fileIDs.assign, which stores the name in the
// reader's attributes: filelog checkpoints them with the offset), emits the lines as the
// stock file input does, and records where the delivered lines end.
func (i *input) emitBatch(ctx context.Context, tokens [][]byte, attributes map[string]any, lastRecordNumber int64, offsets []int64) error {
	i.ids.assign(ctx, attributes, offsets[0])
	entries, convertErr := i.convertTokens(tokens, attributes, lastRecordNumber, offsets)
	err := i.WriteBatch(ctx, entries)
	// the reader advances its offset past the batch only when ctx is still live (reader.emitBatch)
	if ctx.Err() == nil && attributes[attrFileID] != nil {
		attributes[attrFileEnd] = offsets[len(tokens)]
	}
	if convertErr != nil || err != nil {
		return errors.Join(convertErr, err)
	}
	return nil
}

func (i *input) convertTokens(tokens [][]byte, attributes map[string]any, lastRecordNumber int64, offsets []int64) ([]*entry.Entry, error) {
	entries := make([]*entry.Entry, 0, len(tokens))
	var errs error
	for tokenIndex, token := range tokens {
		if len(token) == 0 {
			continue
		}
		ent, err := i.NewEntry(string(token))
		if err != nil {
			errs = errors.Join(errs, fmt.Errorf("create entry: %w", err))
			continue
		}
		for k, v := range attributes {
			if k == attrFileEnd { // bookkeeping for the checkpoint, not the record's
				continue
			}
			if err = ent.Set(entry.NewAttributeField(k), v); err != nil {
				i.Logger().Error("set attribute", zap.Error(err))
			}
		}
		if i.includeFileRecordNumber {
			if err = ent.Set(entry.NewAttributeField(attrs.LogFileRecordNumber), lastRecordNumber-int64(len(tokens))+int64(tokenIndex)+1); err != nil {
				i.Logger().Error("set record number attribute", zap.Error(err))
			}
		}
		if i.includeFileRecordOffset {
			if err = ent.Set(entry.NewAttributeField(attrs.LogFileRecordOffset), offsets[tokenIndex]); err != nil {
				i.Logger().Error("set record offset attribute", zap.Error(err))
			}
		}
		entries = append(entries, ent)
	}
	return entries, errs
}
