"""prosocial.prost"""
