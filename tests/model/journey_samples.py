"""Journeys the model tests share: the example journeys' directory, and one journey that holds
every kind of step (test_journey_graph, test_journey_edits)."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "journeys"

EVERY_KIND = """
id: every-kind
name: Every kind of step
trigger:
  type: event
  event: Signed Up
  where: [{property: plan, op: ne, value: free}]
exit:
  segment: churned
start: split
steps:
  hello:
    type: send
    channel: email
    template: hello
    marketing: false
    next: wait-open
  wait-open:
    type: wait_for_event
    event: Email Opened
    timeout: 2d
    on_event: choose
  choose:
    type: branch
    cases:
      - when: [{message: hello, status: clicked}]
        next: tag
      - when:
          - any:
              - {trait: plan, op: exists}
              - {segment: vip, negate: true}
          - {event: Order Completed, within: 30d}
        next: hook
    default: stop
  split:
    type: split
    paths:
      - {name: control, weight: 1, next: hello}
      - {name: test, weight: 3, next: morning}
  morning:
    type: wait
    until_time: {at: "09:00", weekdays: [mon, tue]}
    next: hello
  tag:
    type: update_profile
    set: {greeted: true, plan_seen: {ref: profile.plan}}
    unset: [old]
  hook:
    type: send
    channel: webhook
    webhook: {url: "https://hooks.example.com/x", body: {a: 1}}
  stop:
    type: exit
"""
