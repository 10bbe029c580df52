"""prosocial.steer"""
