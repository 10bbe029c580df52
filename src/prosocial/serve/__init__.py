"""prosocial.serve"""
