"""caption"""
