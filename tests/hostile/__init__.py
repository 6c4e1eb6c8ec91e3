"""Hostile input for prik: a corpus generator shared by the unit and the real-Kafka campaigns."""
