"""Journeys the `simulate` tests and their `journeys` fixture both use."""

from __future__ import annotations

WELCOME = """\
id: welcome
name: Welcome
trigger: {type: event, event: Signed Up}
entry: {reentry: once}
steps:
  hello: {type: send, channel: email, template: welcome-1, next: wait}
  wait: {type: wait, duration: 2d, next: tips}
  tips: {type: send, channel: email, template: welcome-2}
"""

CART = """\
id: cart
name: Cart abandonment
trigger:
  type: event_not_followed
  event: Product Added
  not_followed_by: {event: Order Completed, within: 1h, match: cart_id}
exit:
  events: [{event: Order Completed, match: cart_id}]
goal: {event: Order Completed, within: 7d, revenue: revenue}
steps:
  reminder: {type: send, channel: email, template: cart-1h, next: wait}
  wait: {type: wait, duration: 23h, next: objections}
  objections: {type: send, channel: email, template: cart-24h}
"""
