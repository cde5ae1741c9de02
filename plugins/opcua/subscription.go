package main

// Subscriptions without a background reader: a poll tops up the Publish
// requests the server holds, then reads what the server has sent, for a
// few milliseconds at most. The server answers a Publish request when it
// has data changes (or a keep-alive), so the answers wait in the host's
// socket between polls; any call that reads the connection (a poll, or a
// read waiting for its own answer) handles them and reports the values.

import (
	"errors"
	"os"
	"time"

	"github.com/gopcua/opcua/ua"

	wapper "wapper.dev/wapper/sdk-go"
)

// publishDepth is how many Publish requests the client keeps at the
// server, so that one is there while the answer to the other travels.
const publishDepth = 2

// keepAlive is about how often the server answers a Publish request when
// nothing changed.
const keepAlive = 10 * time.Second

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || codeOf(err) == wapper.ErrTimeout
}

// poll makes sure the subscription exists, sends Publish requests, and
// handles the answers that come within wait.
func (c *client) poll(wait time.Duration) error {
	if c.ch == nil {
		if err := c.connect(); err != nil {
			c.drop()
			return c.fail(err)
		}
	}
	if c.sub.id == 0 {
		if err := c.subscribe(); err != nil {
			return err
		}
	}
	if err := c.publish(); err != nil {
		return err
	}
	deadline := time.Now().Add(wait)
	for {
		m, err := c.ch.receive(deadline)
		if err != nil {
			if isTimeout(err) {
				return nil
			}
			c.lost(err)
			return c.fail(err)
		}
		c.unsolicited(m)
		if c.sub.id == 0 {
			return nil // recreated at the next poll
		}
		if err := c.publish(); err != nil {
			return err
		}
		// What else is waiting has arrived by now.
		deadline = time.Now().Add(time.Millisecond)
	}
}

// publish sends Publish requests until publishDepth are at the server,
// acknowledging the notifications received.
func (c *client) publish() error {
	deadline := time.Now().Add(c.cfg.timeout)
	for len(c.sub.inFlight) < c.sub.maxInFlight {
		if time.Now().After(c.ch.renewAt) {
			if err := c.openChannel(true, deadline); err != nil {
				c.lost(err)
				return c.fail(err)
			}
		}
		acks := c.sub.acks
		if acks == nil {
			acks = []*ua.SubscriptionAcknowledgement{}
		}
		id, err := c.send(&ua.PublishRequest{SubscriptionAcknowledgements: acks}, deadline)
		if err != nil {
			c.lost(err)
			return c.fail(err)
		}
		c.sub.acks = nil
		c.sub.inFlight[id] = true
	}
	return nil
}

// subscribe creates the subscription and its monitored items.
func (c *client) subscribe() error {
	items, err := c.items()
	if err != nil {
		return err
	}
	interval := c.cfg.publishingInterval
	ka := uint32(max(3, keepAlive/interval))
	v, err := c.call(&ua.CreateSubscriptionRequest{
		RequestedPublishingInterval: float64(interval) / float64(time.Millisecond),
		RequestedLifetimeCount:      6 * ka,
		RequestedMaxKeepAliveCount:  ka,
		PublishingEnabled:           true,
	})
	if err != nil {
		return err
	}
	cs, ok := v.(*ua.CreateSubscriptionResponse)
	if !ok || cs.SubscriptionID == 0 {
		return c.fail(wapper.Errorf(wapper.ErrIO, "CreateSubscription: malformed response"))
	}
	c.sub = subscription{
		id:          cs.SubscriptionID,
		inFlight:    map[uint32]bool{},
		maxInFlight: publishDepth,
	}
	v, err = c.call(&ua.CreateMonitoredItemsRequest{
		SubscriptionID:     cs.SubscriptionID,
		TimestampsToReturn: ua.TimestampsToReturnNeither,
		ItemsToCreate:      items,
	})
	if err != nil {
		c.sub.id = 0
		return err
	}
	mi, ok := v.(*ua.CreateMonitoredItemsResponse)
	if !ok || len(mi.Results) != len(items) {
		c.sub.id = 0
		return c.fail(wapper.Errorf(wapper.ErrIO, "CreateMonitoredItems: malformed response"))
	}
	failed := 0
	var first error
	for i, r := range mi.Results {
		if r == nil || isBad(r.StatusCode) {
			failed++
			s := ua.StatusBadUnexpectedError
			if r != nil {
				s = r.StatusCode
			}
			err := wapper.Errorf(wapper.ErrDeviceFailed, "monitor node %s: %s", items[i].ItemToMonitor.NodeID, statusText(s))
			wapper.Log.Warn("monitored item refused", "handle", items[i].RequestedParameters.ClientHandle, "err", err)
			if first == nil {
				first = err
			}
		}
	}
	if failed == len(items) {
		// Nothing to publish: remove it, and try again at the next poll.
		c.call(&ua.DeleteSubscriptionsRequest{SubscriptionIDs: []uint32{cs.SubscriptionID}})
		c.sub.id = 0
		return first
	}
	return nil
}
