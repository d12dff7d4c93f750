"""Message content: templates, the render context, tracked links and consent links."""
