"""The network (§3): the model builder, local response normalisation, columns on two devices."""
