package sqs

import (
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

func TestSubscriberConfigDefaultsAndValidate(t *testing.T) {
	var c SubscriberConfig
	c.setDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if c.WaitTime != 20*time.Second || c.BatchSize != 10 || c.MaxHold != 5*time.Minute || c.NackBackoff != 0 {
		t.Errorf("defaults %+v", c)
	}
	bad := SubscriberConfig{
		WaitTime: 21 * time.Second, BatchSize: 11, MaxInFlight: -1, VisibilityTimeout: 1500 * time.Millisecond,
		MaxHold: -time.Second, NackBackoff: -time.Second, CloseTimeout: -1, ReceiveErrorBackoff: -1,
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"wait time", "batch size", "max in flight", "visibility timeout", "max hold", "nack backoff", "close timeout", "receive error backoff"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestPublisherConfigValidate(t *testing.T) {
	var c PublisherConfig
	c.setDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if err := (PublisherConfig{Timeout: -1}).Validate(); err == nil {
		t.Error("negative timeout accepted")
	}
}

func TestConstructorsRefuseNil(t *testing.T) {
	if _, err := NewSubscriber(SubscriberConfig{}, nil, nil); err == nil {
		t.Error("NewSubscriber accepted nil deps")
	}
	if _, err := NewPublisher(PublisherConfig{}, nil, nil); err == nil {
		t.Error("NewPublisher accepted nil deps")
	}
}

func TestEncode(t *testing.T) {
	msg := func(payload string, md map[string]string) *message.Message {
		m := message.NewMessage("uuid-1", []byte(payload))
		for k, v := range md {
			m.Metadata.Set(k, v)
		}
		return m
	}
	many := map[string]string{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"} {
		many[k] = "v"
	}
	cases := []struct {
		name    string
		msg     *message.Message
		fifo    bool
		wantErr string
		check   func(t *testing.T, o outgoing)
	}{
		{name: "standard with delay and attributes", msg: msg(`{"a":1}`, map[string]string{MetaDelaySeconds: "900", "fleet": "x", "empty": "", MetaReceiveCount: "3"}),
			check: func(t *testing.T, o outgoing) {
				if o.delay != 900 || o.groupID != nil {
					t.Errorf("delay %d group %v", o.delay, o.groupID)
				}
				if len(o.attrs) != 2 || *o.attrs["fleet"].StringValue != "x" || *o.attrs[AttrUUID].StringValue != "uuid-1" {
					t.Errorf("attrs %v: want uuid and fleet only", o.attrs)
				}
			}},
		{name: "delay too long", msg: msg("x", map[string]string{MetaDelaySeconds: "901"}), wantErr: "delay_seconds"},
		{name: "delay not a number", msg: msg("x", map[string]string{MetaDelaySeconds: "5s"}), wantErr: "delay_seconds"},
		{name: "standard ignores fifo keys", msg: msg("x", map[string]string{MetaGroupID: "g", MetaDedupID: "d"}),
			check: func(t *testing.T, o outgoing) {
				if o.groupID != nil || o.dedupID != nil || len(o.attrs) != 1 {
					t.Errorf("fifo keys leaked: %+v", o)
				}
			}},
		{name: "fifo with group and dedup", fifo: true, msg: msg("x", map[string]string{MetaGroupID: "g", MetaDedupID: "d"}),
			check: func(t *testing.T, o outgoing) {
				if *o.groupID != "g" || *o.dedupID != "d" {
					t.Errorf("group/dedup %+v", o)
				}
			}},
		{name: "fifo without group", fifo: true, msg: msg("x", nil), wantErr: "message_group_id"},
		{name: "fifo with delay", fifo: true, msg: msg("x", map[string]string{MetaGroupID: "g", MetaDelaySeconds: "5"}), wantErr: "cannot delay"},
		{name: "empty payload", msg: msg("", nil), wantErr: "empty payload"},
		{name: "binary payload", msg: msg("\xff\xfe", nil), wantErr: "utf-8"},
		{name: "control character", msg: msg("a\x00b", nil), wantErr: "U+0000"},
		{name: "too big", msg: msg(strings.Repeat("x", MaxMessageBytes), nil), wantErr: "at most 262144"},
		{name: "too many attributes", msg: msg("x", many), wantErr: "at most 10"},
		{name: "bad attribute name", msg: msg("x", map[string]string{"has space": "v", "AWS.x": "v"}), wantErr: "not a valid sqs attribute name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := encode(tc.msg, tc.fifo)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if o.body != string(tc.msg.Payload) {
				t.Errorf("body %q, want the payload verbatim", o.body)
			}
			tc.check(t, o)
		})
	}
}

func TestBatchesSplitByCountAndSize(t *testing.T) {
	var entries []outgoing
	for range 23 {
		entries = append(entries, outgoing{size: 1000})
	}
	if got := batches(entries); len(got) != 3 || len(got[0]) != 10 || len(got[2]) != 3 {
		t.Errorf("23 small messages in %d batches", len(got))
	}
	big := []outgoing{{uuid: "a", size: 200 * 1024}, {uuid: "b", size: 100 * 1024}, {uuid: "c", size: 50 * 1024}}
	got := batches(big)
	if len(got) != 2 || got[0][0].uuid != "a" || got[1][0].uuid != "b" || got[1][1].uuid != "c" {
		t.Errorf("size split %v, want [a] [b c] in order", got)
	}
}
