"""prosocial.collect"""
