"""prosocial.eval"""
