"""The Kubernetes API side: configuration, a small EndpointSlice client, slices, the watch."""
